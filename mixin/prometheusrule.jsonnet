// The rules and alerts as a prometheus-operator PrometheusRule (deploy/kustomize/base/prometheusrule.yaml).
// kube-prometheus-stack selects rules by a `release: <its release name>` label by default: add it
// with a kustomize patch (deploy/README.md) or the Helm value prometheusRule.labels.
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
