local promql = import '../lib/promql.libsonnet';

// Recording rules: availability ratios per Service, Gateway and hostname over the configured
// windows (for the dashboards and for SLOs), and the per-lease holder-change count the flapping
// alert reads.
{
  prometheusRules+:: {
    local c = $._config,
    local by(extra) = promql.labels([c.clusterLabel] + extra),
    local availability(level, metric, groupBy) = [
      {
        record: '%s:%s:avg_over_time_%s' % [level, metric, w],
        expr: 'avg by (%(by)s) (avg_over_time(%(metric)s{%(sel)s}[%(w)s]))' % {
          by: by(groupBy),
          metric: metric,
          sel: c.lbprobeSelector,
          w: w,
        },
      }
      for w in c.availabilityWindows
    ],

    groups+: [
      {
        name: 'lbprobe-availability.rules',
        rules:
          // Share of probes (over every prober and IP of the Service) that reached it.
          availability('namespace_service', 'loadbalancer_reachable', ['namespace', 'service'])
          // Share of Gateway listener probes that connected.
          + availability('namespace_gateway', 'gateway_listener_reachable', ['namespace', 'gateway'])
          // Share of DNS checks (every server) whose answer was exactly the expected addresses.
          + availability('hostname', 'gateway_dns_answer_correct', ['hostname']),
      },
      {
        name: 'lbprobe-l2.rules',
        rules: [
          {
            // spec.leaseTransitions of each L2 lease, whoever holds it: the holder is a label of
            // the raw series, so a takeover starts a new series there.
            record: 'namespace_service_lease:loadbalancer_l2_lease_transitions:max',
            expr: 'max by (%(by)s) (loadbalancer_l2_lease_transitions{%(sel)s})' % {
              by: by(['namespace', 'service', 'lease']),
              sel: c.lbprobeSelector,
            },
          },
        ],
      },
    ],
  },
}
