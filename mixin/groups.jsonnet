// The recording rules and alerts as one rule file (deploy/helm/lbprobe/files/rules.yaml, which the
// Helm chart's PrometheusRule embeds).
local mixin = import 'mixin.libsonnet';
std.manifestYamlDoc({ groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups }, quote_keys=false)
