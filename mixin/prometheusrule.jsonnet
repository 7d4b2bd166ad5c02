// The rules and alerts as a prometheus-operator PrometheusRule (deploy/kustomize/base/prometheusrule.yaml).
// Its labels are the ones kube-prometheus-stack's ruleSelector matches by default (release);
// kustomize overlays and the Helm chart adjust them.
local mixin = import 'mixin.libsonnet';
std.manifestYamlDoc({
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: {
    name: 'lbprobe',
    labels: {
      'app.kubernetes.io/name': 'lbprobe',
      'app.kubernetes.io/component': 'alerting',
    },
  },
  spec: {
    groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups,
  },
}, quote_keys=false)
