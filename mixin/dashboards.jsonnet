// jsonnet -m generated/dashboards dashboards.jsonnet (see hack/mixin.sh): one file per dashboard.
(import 'mixin.libsonnet').grafanaDashboards
