{{/*
Name of the chart (the app.kubernetes.io/name label).
*/}}
{{- define "lbprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects. Truncated at 63 characters (DNS label); the release name alone when it
already contains the chart name.
*/}}
{{- define "lbprobe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "lbprobe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Namespace of the release's objects.
*/}}
{{- define "lbprobe.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (selectors are immutable).
*/}}
{{- define "lbprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lbprobe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "lbprobe.labels" -}}
helm.sh/chart: {{ include "lbprobe.chart" . }}
{{ include "lbprobe.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lbprobe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "lbprobe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lbprobe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: repository:tag, or repository@digest when a digest is set. The tag defaults to
the chart's appVersion.
*/}}
{{- define "lbprobe.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
imagePullSecrets as references: a name becomes {name: <name>}.
*/}}
{{- define "lbprobe.imagePullSecrets" -}}
{{- $secrets := list }}
{{- range .Values.imagePullSecrets }}
{{- if kindIs "string" . }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- else }}
{{- $secrets = append $secrets . }}
{{- end }}
{{- end }}
{{- with $secrets }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether Kubernetes discovery is on ("true" or ""): kube.enabled is true or auto.
*/}}
{{- define "lbprobe.kubeEnabled" -}}
{{- if ne (toString .Values.kube.enabled) "false" }}true{{ end }}
{{- end }}

{{/*
Whether the RBAC objects are rendered ("true" or "").
*/}}
{{- define "lbprobe.rbacEnabled" -}}
{{- if and .Values.rbac.create (include "lbprobe.kubeEnabled" .) }}true{{ end }}
{{- end }}

{{/*
Whether the route check is on ("true"), off ("false"), or left to lbprobe's default (""): route.check
when set, else on in daemonset mode.
*/}}
{{- define "lbprobe.routeCheck" -}}
{{- if kindIs "invalid" .Values.route.check }}
{{- if eq .Values.mode "daemonset" }}true{{ end }}
{{- else if .Values.route.check }}true
{{- else }}false
{{- end }}
{{- end }}

{{/*
lbprobe's command-line flags, a YAML list.
*/}}
{{- define "lbprobe.args" -}}
- --config.file=/etc/lbprobe/lbprobe.yml
- {{ printf "--kube.enabled=%v" .Values.kube.enabled | quote }}
- {{ printf "--cilium.namespace=%s" .Values.kube.ciliumNamespace | quote }}
- {{ printf "--web.listen-address=:%v" .Values.service.port | quote }}
{{- if and (eq .Values.mode "daemonset") .Values.arp.interface }}
- {{ printf "--probe.arp.interface=%s" .Values.arp.interface | quote }}
{{- end }}
{{- $route := include "lbprobe.routeCheck" . }}
{{- if eq $route "true" }}
- --probe.route.check
{{- with .Values.route.expectInterface }}
- {{ printf "--probe.route.expect-interface=%s" . | quote }}
{{- end }}
{{- else if eq $route "false" }}
- --no-probe.route.check
{{- end }}
{{- if include "lbprobe.remediation" . }}
- {{ printf "--remediate.leases=%s" .Values.remediation.mode | quote }}
{{- end }}
{{- if include "lbprobe.sharded" . }}
- --pod=$(POD_NAME)
- --pod-namespace=$(POD_NAMESPACE)
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether lease remediation is on or in dry-run ("true"); it needs Kubernetes discovery.
*/}}
{{- define "lbprobe.remediation" -}}
{{- $mode := .Values.remediation.mode | toString }}
{{- if not (has $mode (list "off" "dry-run" "on")) }}
{{- fail (printf "remediation.mode: %q is not off, dry-run or on" $mode) }}
{{- end }}
{{- if and (ne $mode "off") (include "lbprobe.kubeEnabled" .) }}true{{ end }}
{{- end }}

{{/*
Whether the targets are sharded ("true" or ""): a StatefulSet of sharding.shards pods instead of the
Deployment, each pod its own shard (--pod). validateValues rejects it in daemonset mode.
*/}}
{{- define "lbprobe.sharded" -}}
{{- if .Values.sharding.enabled }}true{{ end }}
{{- end }}

{{/*
The number of shards, an int (validateValues has checked sharding.shards).
*/}}
{{- define "lbprobe.shards" -}}
{{- int .Values.sharding.shards }}
{{- end }}

{{/*
Mode-specific values: the daemonset.* variant in daemonset mode.
*/}}
{{- define "lbprobe.podSecurityContext" -}}
{{- if eq .Values.mode "daemonset" }}
{{- toYaml .Values.daemonset.podSecurityContext }}
{{- else }}
{{- toYaml .Values.podSecurityContext }}
{{- end }}
{{- end }}

{{- define "lbprobe.securityContext" -}}
{{- if eq .Values.mode "daemonset" }}
{{- toYaml .Values.daemonset.securityContext }}
{{- else }}
{{- toYaml .Values.securityContext }}
{{- end }}
{{- end }}

{{- define "lbprobe.tolerations" -}}
{{- $tolerations := .Values.tolerations | default list }}
{{- if eq .Values.mode "daemonset" }}
{{- $tolerations = concat (.Values.daemonset.tolerations | default list) $tolerations }}
{{- end }}
{{- with $tolerations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Checks the values; fails with a message naming the value.
*/}}
{{- define "lbprobe.validateValues" -}}
{{- if not (has .Values.mode (list "deployment" "daemonset")) }}
{{- fail (printf "\n\nmode: %q is not valid: use \"deployment\" (in-cluster prober) or \"daemonset\" (one pod per node with hostNetwork and NET_RAW for ARP probes)." (toString .Values.mode)) }}
{{- end }}
{{- if not (has (toString .Values.kube.enabled) (list "true" "false" "auto")) }}
{{- fail (printf "\n\nkube.enabled: %q is not valid: use true, false or \"auto\"." (toString .Values.kube.enabled)) }}
{{- end }}
{{- if and (eq .Values.mode "daemonset") .Values.daemonset.hostNetwork (dig "sysctls" list (.Values.daemonset.podSecurityContext | default dict)) }}
{{- fail "\n\ndaemonset.podSecurityContext.sysctls: Kubernetes rejects net.* sysctls in pods with hostNetwork (daemonset.hostNetwork: true)." }}
{{- end }}
{{- if not .Values.service.port }}
{{- fail "\n\nservice.port is required: lbprobe listens on it (--web.listen-address)." }}
{{- end }}
{{- if .Values.sharding.enabled }}
{{- if eq .Values.mode "daemonset" }}
{{- fail "\n\nsharding.enabled with mode: daemonset: the DaemonSet is not sharded, every node must ARP every LoadBalancer IP. Shard a mode: deployment release (a StatefulSet), and keep the DaemonSet as a release of its own without sharding." }}
{{- end }}
{{- if not (include "lbprobe.kubeEnabled" .) }}
{{- fail "\n\nsharding.enabled needs Kubernetes discovery (kube.enabled true or auto): each pod reads the number of shards from its StatefulSet's spec.replicas through the API." }}
{{- end }}
{{- $shards := .Values.sharding.shards }}
{{- if not (or (kindIs "int" $shards) (kindIs "int64" $shards) (and (kindIs "float64" $shards) (eq (floor $shards) $shards))) }}
{{- fail (printf "\n\nsharding.shards: %q is not a whole number of shards." (toString $shards)) }}
{{- end }}
{{- if lt (int $shards) 2 }}
{{- fail (printf "\n\nsharding.shards: %d: shard into at least 2 (one shard is sharding.enabled: false, a Deployment)." (int $shards)) }}
{{- end }}
{{- end }}
{{- end }}
