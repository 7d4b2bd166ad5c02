local g = import '../lib/dashboard.libsonnet';

// One LoadBalancer Service: its IPs and ports as each lbprobe instance sees them, ICMP, the L2
// announcement lease, who answers ARP, the route and the availability windows.
{
  grafanaDashboards+:: {
    local c = $._config,
    local k = (import 'common.libsonnet')(c),
    local svcMatchers = ['namespace="$namespace"', 'service="$service"'],
    // Matchers of the selected Service's series.
    local m(extra=[]) = k.m(svcMatchers + extra),
    local lease = k.by(['lease', 'holder']),
    local inst = k.instance,
    local byInstance = k.byInstance,

    // Seven stats on one line (3 + 4 + 3 + 4 + 4 + 3 + 3), the availability windows below.
    local status = [
      g.row('Status'),
      g.stat('IP assigned', [g.target('max by (%s) (loadbalancer_ip_assigned{%s})' % [k.by([]), m()])], 'Whether LB-IPAM gave the Service an IP.')
      + g.mappings(k.state('assigned', 'PENDING'))
      + g.size(3, 4),
      // The implementation and node are the series' legend.
      g.stat('Announcer', [g.target('max by (%s) (loadbalancer_announcer_info{%s})' % [k.by(['implementation', 'node']), m()], '{{implementation}}: {{node}}')], 'The L2 implementation that announces the Service (cilium, metallb, kube-vip) and the node it names as the announcer: it should answer ARP (NDP for IPv6) for the IPs. No node after the colon: nobody announces them.')
      + g.options({ textMode: 'name', colorMode: 'none' }),
      g.stat('L2 policies', [g.target('max by (%s) (loadbalancer_l2_policies{%s})' % [k.by([]), m()])], 'CiliumL2AnnouncementPolicies that select the Service: with none, no node announces its IPs. Empty for a Service that MetalLB or kube-vip announces.')
      + g.thresholds(g.steps([['red', null], ['green', 1]]))
      + g.size(3, 4),
      g.stat('Announced', [g.target('min by (%s) (loadbalancer_l2_announced{%s})' % [k.by([]), m()])], 'Whether every IP of the Service has a live L2 announcement lease.')
      + g.mappings(k.state('announced', 'NOT ANNOUNCED')),
      // The holder's name is the series' legend.
      g.stat('Lease holder', [g.target('max by (%s) (loadbalancer_l2_lease_renew_age_seconds{%s})' % [lease, m()], '{{holder}}')], 'The node that holds the L2 announcement lease: it answers ARP for the IPs.')
      + g.options({ textMode: 'name', colorMode: 'none' }),
      g.stat('Holder Ready', [g.target('min by (%s) (loadbalancer_l2_lease_holder_ready{%s})' % [k.by([]), m()])], 'Whether the lease holder is a Node whose Ready condition is True.')
      + g.mappings(k.state('Ready', 'NOT READY'))
      + g.size(3, 4),
      g.stat('Reachable', [g.target('min by (%s) (loadbalancer_reachable{%s})' % [k.by([]), m()])], 'Whether every IP of the Service answers every lbprobe instance now.')
      + g.mappings(k.okFail)
      + g.size(3, 4),
    ] + [
      k.availabilityStat(
        'Availability %s' % r.window,
        '%s{%s}' % [r.rule, k.rm(svcMatchers)],
        'Share of the probes (every lbprobe instance and IP) that reached the Service over the last %s.' % r.window,
      )
      + g.size(std.floor(24 / std.length(c.availabilityWindows)), 4)
      for r in k.availabilityRules('namespace_service', 'loadbalancer_reachable')
    ],

    // Legend of a port's series: ip:port/protocol and the lbprobe instance.
    local portLegend = '{{ip}}:{{port}}/{{protocol}} %s' % inst,
    local ports = [
      g.row('Ports'),
      g.stateTimeline('Port reachability', [g.target('loadbalancer_port_reachable{%s}' % m(), portLegend)], 'Whether each probed port answered each lbprobe instance (TCP connect, or a DNS query for UDP ports).')
      + g.mappings(k.okFail)
      + g.size(24, 7),
      g.timeseries('Probe duration', [g.target('loadbalancer_probe_duration_seconds{%s}' % m(), portLegend)], 'How long each port probe took.')
      + g.unit('s') + g.min(0) + g.legendTable(),
      k.labelTable(
        'Probe failures',
        k.instanceLabels + ['ip', 'port', 'protocol', 'reason'],
        [g.column(
          'Failed probes',
          'sum by (%s) (count_over_time(loadbalancer_probe_failure_info{%s}[$__range]))' % [byInstance(['ip', 'port', 'protocol', 'reason']), m()],
        )],
        description='Port probes that failed in the time range, per reason: refused (nothing listens), timeout (dropped), unreachable, permission_denied, error.',
      )
      + g.sortBy('Failed probes', desc=true),
    ],

    local icmp = [
      g.row('ICMP'),
      g.stateTimeline('ICMP echo', [g.target('loadbalancer_icmp_reachable{%s}' % m(), '{{ip}} %s' % inst)], 'Whether each IP answered an ICMP echo (targets with ICMP probing only).')
      + g.mappings(k.okFail)
      + g.size(8, 8),
      g.timeseries('ICMP round-trip time', [g.target('loadbalancer_icmp_rtt_seconds{%s}' % m(), '{{ip}} %s' % inst)], 'Echo round-trip time, when answered.')
      + g.unit('s') + g.min(0)
      + g.size(8, 8),
      k.labelTable(
        'ICMP failures',
        k.instanceLabels + ['ip', 'reason'],
        [g.column(
          'Failed echoes',
          'sum by (%s) (count_over_time(loadbalancer_icmp_failure_info{%s}[$__range]))' % [byInstance(['ip', 'reason']), m()],
        )],
        description='ICMP echoes that failed in the time range, per reason.',
      )
      + g.sortBy('Failed echoes', desc=true)
      + g.size(8, 8),
    ],

    local l2Lease = [
      g.row('L2 announcement lease'),
      // One band per holder: where it changes, the IPs moved to another node.
      g.stateTimeline('Lease holders over time', [g.target('group by (%s) (loadbalancer_l2_lease_renew_age_seconds{%s})' % [lease, m()], '{{holder}}')], 'Which node held the L2 announcement lease when.')
      + g.mappings(g.valueMappings({ '1': ['holder', 'blue'] }))
      + g.size(24, 5),
      g.stateTimeline(
        'Lease state',
        [
          g.target('max by (%s) (loadbalancer_l2_lease_expired{%s})' % [lease, m()], 'expired ({{holder}})'),
          g.target('min by (%s) (loadbalancer_l2_lease_holder_ready{%s})' % [lease, m()], 'holder Ready ({{holder}})'),
        ],
        'Whether the lease expired (its holder stopped renewing it) and whether the holder node is Ready.',
      )
      + g.mappings(k.state('live', 'EXPIRED', good=0))
      + g.overrides([g.override(g.byQuery(1), { mappings: k.state('Ready', 'NOT READY') })])
      + g.size(24, 5),
      g.timeseries(
        'Lease renewal',
        [
          g.target('max by (%s) (loadbalancer_l2_lease_renew_age_seconds{%s})' % [lease, m()], 'renewed ago ({{holder}})'),
          g.target('max by (%s) (loadbalancer_l2_lease_duration_seconds{%s})' % [k.by(['lease']), m()], 'lease duration'),
        ],
        'Time since the holder last renewed the lease; the lease expires when it passes the lease duration.',
      )
      + g.unit('s') + g.min(0)
      + g.overrides([g.override(g.byQuery(1), g.dashed { color: { mode: 'fixed', fixedColor: 'red' } })])
      + g.size(8, 8),
      g.timeseries('Lease held for', [g.target('max by (%s) (loadbalancer_l2_lease_age_seconds{%s})' % [lease, m()], '{{holder}}')], 'Time since the holder acquired the lease.')
      + g.unit('s') + g.min(0)
      + g.size(8, 8),
      g.timeseries('Lease transitions', [g.target('max by (%s) (loadbalancer_l2_lease_transitions{%s})' % [k.by(['lease']), m()], '{{lease}}')], "The lease's spec.leaseTransitions: every step up is a takeover by another node.")
      + g.steppedLines + g.decimals(0)
      + g.size(8, 8),
    ],

    local arp = [
      g.row('ARP'),
      g.stateTimeline(
        'ARP',
        [
          g.target('loadbalancer_arp_reachable{%s}' % m(), 'reply {{ip}} on {{interface}} %s' % inst),
          g.target('loadbalancer_arp_holder_match{%s}' % m(), 'holder answers {{ip}} %s' % inst),
        ],
        'Whether some host answered ARP for each IP (with --probe.arp.interface), and whether the only MAC that answered is the MAC of the lease holder (absent when that MAC is unknown).',
      )
      + g.mappings(k.state('reply', 'NO REPLY'))
      + g.overrides([g.override(g.byQuery(1), { mappings: k.state('holder only', 'MISMATCH') })]),
      g.timeseries('ARP responder count', [g.target('loadbalancer_arp_responders{%s}' % m(), '{{ip}} on {{interface}} %s' % inst)], 'How many distinct MACs answered ARP for each IP: more than 1 is a split brain.')
      + g.decimals(0) + g.min(0) + g.steppedLines
      + g.thresholds(g.steps([['transparent', null], ['red', 2]]))
      + g.thresholdsStyle('line+area'),
      k.labelTable(
        'Answering MACs',
        k.instanceLabels + ['ip', 'interface', 'mac', 'node'],
        [g.labelsOnly('max by (%s) (loadbalancer_arp_responder_info{%s})' % [byInstance(['ip', 'interface', 'mac', 'node']), m()])],
        description='Every MAC that answers ARP for the IPs now, and its node when it belongs to one.',
      ),
      k.labelTable(
        'ARP failures and skipped probes',
        k.instanceLabels + ['ip', 'interface', 'reason'],
        [
          g.column('Failed', 'max by (%s) (loadbalancer_arp_failure_info{%s})' % [byInstance(['ip', 'interface', 'reason']), m()], g.colorBackground { mappings: g.valueMappings({ '1': ['FAILED', 'red'] }) }),
          g.column('Skipped', 'max by (%s) (loadbalancer_arp_skipped{%s})' % [byInstance(['ip', 'interface', 'reason']), m()], { mappings: g.valueMappings({ '1': ['skipped', 'text'] }) }),
        ],
        description='ARP probes (NDP for IPv6 IPs) that fail now (timeout, permission_denied) or were not run (holder_is_self: lbprobe runs on the holder, which cannot ARP its own VIP).',
      ),
    ],

    local route = [
      g.row('Route'),
      k.labelTable(
        'Routes',
        k.instanceLabels + ['ip', 'interface', 'gateway'],
        [
          g.labelsOnly('max by (%s) (loadbalancer_route_info{%s})' % [byInstance(['ip', 'interface', 'gateway']), m()]),
          k.stateColumn('Expected', 'min by (%s) (loadbalancer_route_ok{%s})' % [byInstance(['ip']), m()], 'yes', 'NO'),
        ],
        description='The interface and next hop each lbprobe instance routes each IP through, and whether the interface is the expected one (--probe.route.expect-interface).',
      ),
      g.stateTimeline('Route as expected', [g.target('loadbalancer_route_ok{%s}' % m(), '{{ip}} %s' % inst)], 'Whether the route to each IP goes through the expected interface, over time.')
      + g.mappings(k.state('expected', 'UNEXPECTED')),
    ],

    'lbprobe-service.json': k.dashboard(
      'service',
      'Service',
      'One LoadBalancer Service: reachability of its IPs and ports, its L2 announcement lease, ARP and routes, as each lbprobe instance sees them.',
      [
        g.queryVariable('namespace', 'Namespace', 'label_values(loadbalancer_ip_assigned{%s}, namespace)' % k.m()),
        g.queryVariable('service', 'Service', 'label_values(loadbalancer_ip_assigned{%s}, service)' % k.m(['namespace="$namespace"'])),
      ],
      status + ports + icmp + l2Lease + arp + route,
    ),
  },
}
