// jsonnet -S rules.jsonnet > generated/rules.yaml (see hack/mixin.sh)
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusRules, quote_keys=false)
