// jsonnet -S alerts.jsonnet > generated/alerts.yaml (see hack/mixin.sh)
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusAlerts, quote_keys=false)
