// The Grafana dashboards: each adds its file to grafanaDashboards (written to generated/dashboards/
// by dashboards.jsonnet).
(import 'overview.libsonnet')
+ (import 'service.libsonnet')
+ (import 'gateway.libsonnet')
+ (import 'self.libsonnet')
