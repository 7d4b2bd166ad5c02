local g = import '../lib/dashboard.libsonnet';

// lbprobe itself: whether its instances are up and keep within their scrape timeout, what they
// probe, their view of Kubernetes, config reloads, versions and resources.
{
  grafanaDashboards+:: {
    local c = $._config,
    local k = (import 'common.libsonnet')(c),
    // Matchers of the selected instances' series.
    local m(extra=[]) = k.m(['instance=~"$instance"'] + extra),
    local inst = k.instance,

    local status = [
      g.row('Status'),
      g.stateTimeline('Up', [g.target('up{%s}' % m(), inst)], 'Whether Prometheus could scrape each instance.')
      + g.mappings(k.state('up', 'DOWN'))
      + g.size(8, 6),
      g.stateTimeline('Config reload', [g.target('lbprobe_config_last_reload_successful{%s}' % m(), inst)], 'Whether the last reload of the config file succeeded (a bad file keeps the old config serving).')
      + g.mappings(k.state('OK', 'FAILED'))
      + g.size(8, 6),
      k.labelTable(
        'Versions',
        ['version', 'revision', 'goversion'],
        [g.column('Instances', 'count by (%s) (lbprobe_build_info{%s})' % [k.by(['version', 'revision', 'goversion']), m()])],
        description='How many instances run each build.',
      )
      + g.sortBy('Instances', desc=true)
      + g.size(8, 6),
    ],

    local scrapes = [
      g.row('Scrapes'),
      g.timeseries(
        'Round duration and timeout',
        [
          g.target('lbprobe_scrape_duration_seconds{%s}' % m(), 'round %s' % inst),
          g.target('lbprobe_probe_timeout_seconds{%s}' % m(), 'allowed %s' % inst),
        ],
        'How long the round of each scrape took, and the time it was allowed (the scrape timeout minus --probe.timeout-offset; dashed). Probes still running at the timeout report a timeout.',
      )
      + g.unit('s') + g.min(0)
      + g.overrides([g.override(g.byQuery(1), g.dashed)]),
      g.timeseries(
        'Rounds',
        [g.target('sum by (%s) (rate(lbprobe_rounds_total{%s}[$__rate_interval]))' % [k.byInstance([]), m()], inst)],
        'Rounds of probes finished per second (lower than scrapes when scrapes share a round).',
      )
      + g.unit('ops') + g.min(0),
      g.timeseries(
        'Probes by result',
        [g.target('sum by (%s) (rate(lbprobe_probes_total{%s}[$__rate_interval]))' % [k.by(['kind', 'result']), m()], '{{kind}} {{result}}')],
        'Probes per second of every selected instance, by kind (tcp, udp_dns, icmp, dns, tls) and result (success or the failure reason).',
      )
      + g.unit('ops') + g.min(0) + g.stacked
      + g.legendTable(['mean', 'lastNotNull'], 'right')
      + g.size(16, 8),
      g.timeseries(
        'Targets',
        [g.target('max by (%s) (lbprobe_targets{%s})' % [k.by(['kind']), m()], '{{kind}}')],
        'Targets of a scrape by kind (loadbalancer, ip, port, hostname, dns_check, tls_check), the most of any selected instance.',
      )
      + g.min(0) + g.decimals(0)
      + g.size(8, 8),
    ],

    local kubernetes = [
      g.row('Kubernetes'),
      g.stateTimeline('Synced', [g.target('lbprobe_kubernetes_synced{%s}' % m(), '{{resource}} %s' % inst)], 'Whether each informer has synced and the API server answers; while it does not, the last known state keeps being served.')
      + g.mappings(k.state('synced', 'NOT SYNCED'))
      + g.size(8, 8),
      k.labelTable(
        'Resources',
        k.instanceLabels + ['resource'],
        [
          k.stateColumn('Served', 'max by (%s) (lbprobe_kubernetes_resource_enabled{%s})' % [k.byInstance(['resource']), m()], 'yes', 'no'),
          k.stateColumn('Synced', 'min by (%s) (lbprobe_kubernetes_synced{%s})' % [k.byInstance(['resource']), m()]),
          g.column('Watch errors', 'sum by (%s) (increase(lbprobe_kubernetes_watch_errors_total{%s}[$__range]))' % [k.byInstance(['resource']), m()], { decimals: 0 }),
        ],
        description='Whether the cluster serves each resource (Gateway API and Cilium CRDs are optional), whether its informer is synced, and watch errors in the time range.',
      )
      + g.size(8, 8),
      g.timeseries(
        'Watch errors',
        [g.target('sum by (%s) (rate(lbprobe_kubernetes_watch_errors_total{%s}[$__rate_interval]))' % [k.by(['resource']), m()], '{{resource}}')],
        'Watch errors per second, by resource.',
      )
      + g.unit('ops') + g.min(0)
      + g.size(8, 8),
    ],

    local remediation = [
      g.row('Lease remediation'),
      g.timeseries(
        'Remediation actions',
        [g.target('sum by (%s) (increase(lbprobe_remediations_total{%s}[$__rate_interval]))' % [k.by(['action', 'result']), m()], '{{action}} {{result}}')],
        'What lease remediation did (--remediate.leases): deletes by verdict, dry-run counts, deletes refused by a guard rail (cooldown, budget, stopped, not_leader) or by the API (conflict: the lease changed after it was judged), and the checks after a delete (verify fixed, not_fixed).',
      )
      + g.min(0) + g.decimals(0)
      + g.size(12, 8),
      k.labelTable(
        'Last action per lease',
        k.instanceLabels + ['lease'],
        [
          g.column('Last action', 'max by (%s) (lbprobe_remediation_last_action_timestamp_seconds{%s}) * 1000' % [k.byInstance(['lease']), m()], { unit: 'dateTimeAsIso' }),
          g.column('Actions in range', 'max by (%s) (changes(lbprobe_remediation_last_action_timestamp_seconds{%s}[$__range])) + 1' % [k.byInstance(['lease']), m()], { decimals: 0 }),
        ],
        description='Each lease remediation acted on (or, in dry-run, would have), when it last did, and how often in the time range. More than one per cooldown means the cause is elsewhere (LBProbeRemediationRepeating).',
      )
      + g.size(12, 8),
    ],

    local process = [
      g.row('Process'),
      g.timeseries('Memory', [g.target('process_resident_memory_bytes{%s}' % m(), inst)], 'Resident memory of each instance.')
      + g.unit('bytes') + g.min(0)
      + g.size(8, 8),
      g.timeseries('CPU', [g.target('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % m(), inst)], 'CPU used by each instance, in cores.')
      + g.min(0)
      + g.size(8, 8),
      g.timeseries('Goroutines', [g.target('go_goroutines{%s}' % m(), inst)], 'Goroutines of each instance.')
      + g.min(0) + g.decimals(0)
      + g.size(8, 8),
    ],

    'lbprobe-self.json': k.dashboard(
      'self',
      'Exporter',
      'lbprobe itself: scrapes and rounds, probes by result, Kubernetes sync, config reloads, versions and resources.',
      [g.queryVariable('instance', 'Instance', 'label_values(up{%s}, instance)' % k.m(), multi=true, includeAll=true, allValue='.*')],
      status + scrapes + kubernetes + remediation + process,
    ),
  },
}
