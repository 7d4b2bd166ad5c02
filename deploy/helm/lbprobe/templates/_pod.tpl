{{/*
The pod template of the Deployment, the DaemonSet and the StatefulSet.
*/}}
{{- define "lbprobe.podTemplate" -}}
{{- $daemonset := eq .Values.mode "daemonset" -}}
metadata:
  labels:
    {{- include "lbprobe.labels" . | nindent 4 }}
    app.kubernetes.io/component: prober
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "lbprobe.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with (include "lbprobe.imagePullSecrets" .) }}
  imagePullSecrets:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if $daemonset }}
  {{- if .Values.daemonset.hostNetwork }}
  # ARP and the host's routes: the node's own network namespace.
  hostNetwork: true
  {{- end }}
  {{- with .Values.daemonset.dnsPolicy }}
  dnsPolicy: {{ . }}
  {{- end }}
  {{- end }}
  {{- with (include "lbprobe.podSecurityContext" . | fromYaml) }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: lbprobe
      image: {{ include "lbprobe.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "lbprobe.args" . | nindent 8 }}
      {{- $remediation := include "lbprobe.remediation" . }}
      {{- $sharded := include "lbprobe.sharded" . }}
      {{- if or $daemonset .Values.extraEnv $remediation $sharded }}
      env:
        {{- if $daemonset }}
        # --node.name: the ARP probes of the VIPs this node holds are skipped.
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        {{- end }}
        {{- if $sharded }}
        # --pod: the ordinal of the pod's name (<statefulset>-<i>) is its shard.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- if or $remediation $sharded }}
        {{- if $sharded }}
        # --pod-namespace: the namespace of the pod's StatefulSet{{ if $remediation }}, and of lease remediation's leader Leases{{ end }}.
        {{- else }}
        # Lease remediation's leader Lease lives in the pod's namespace.
        {{- end }}
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (include "lbprobe.securityContext" . | fromYaml) }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/lbprobe
          readOnly: true
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "lbprobe.fullname" . }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "lbprobe.tolerations" .) }}
  tolerations:
    {{- . | nindent 4 }}
  {{- end }}
{{- end }}
