local g = import '../lib/dashboard.libsonnet';

// Overview: what fails now, every LoadBalancer IP and Gateway at a glance, IP pools, L2 leases and
// availability. Probe results are shown as the worst any lbprobe instance sees (min); state read
// from Kubernetes is the same from every instance (max).
{
  grafanaDashboards+:: {
    local c = $._config,
    local k = (import 'common.libsonnet')(c),
    local m = k.m,
    local ip = k.by(['namespace', 'service', 'ip']),
    local svc = k.by(['namespace', 'service']),
    local gw = k.by(['namespace', 'gateway']),
    local lease = k.by(['namespace', 'service', 'lease']),
    local alertNames = [r.alert for group in $.prometheusAlerts.groups for r in group.rules if std.objectHas(r, 'alert')],

    local summary = [
      g.row('Summary'),
      k.totalStat(
        'LoadBalancer IPs',
        'count(group by (%s) (loadbalancer_reachable{%s}))' % [ip, m()],
        'LoadBalancer IPs that lbprobe probes.',
      ),
      k.countStat(
        'IPs unreachable',
        'count(min by (%s) (loadbalancer_reachable{%s}) == 0)' % [ip, m()],
        'LoadBalancer IPs whose probed ports all fail from at least one lbprobe instance.',
      ),
      k.countStat(
        'Services without IP',
        'count(max by (%s) (loadbalancer_ip_assigned{%s}) == 0)' % [svc, m()],
        'LoadBalancer Services that LB-IPAM has given no IP (pool exhausted, no pool selects them).',
        'orange',
      ),
      k.countStat(
        'IPs not announced',
        'count(max by (%s) (loadbalancer_l2_announced{%s}) == 0)' % [ip, m()],
        'LoadBalancer IPs with no live L2 announcement lease: no node answers ARP for them.',
      ),
      k.countStat(
        'ARP split brain',
        'count(max by (%s) (loadbalancer_arp_responders{%s}) > 1)' % [ip, m()],
        'LoadBalancer IPs that more than one MAC answers ARP for.',
      ),
      k.countStat(
        'Lease holders not Ready',
        'count(min by (%s) (loadbalancer_l2_lease_holder_ready{%s}) == 0)' % [k.by(['namespace', 'service', 'lease', 'holder']), m()],
        'L2 leases held by a node whose Ready condition is not True.',
      ),
      k.totalStat(
        'Gateways',
        'count(group by (%s) (gateway_info{%s}))' % [gw, m()],
        'Gateways that lbprobe sees.',
      ),
      k.countStat(
        'Gateways not programmed',
        'count(max by (%s) (gateway_programmed{%s}) == 0)' % [gw, m()],
        'Gateways whose Programmed condition is not True.',
        'orange',
      ),
      k.countStat(
        'Listeners unreachable',
        'count(min by (%s) (gateway_listener_reachable{%s}) == 0)' % [k.by(['namespace', 'gateway', 'listener', 'address', 'port']), m()],
        'Gateway listeners that at least one lbprobe instance cannot connect to.',
      ),
      k.countStat(
        'Hostnames with wrong DNS',
        'count(min by (%s) (gateway_dns_answer_correct{%s}) == 0)' % [k.by(['hostname']), m()],
        'Hostnames that at least one DNS server answers with other addresses than their Gateways have (or not at all).',
      ),
      k.countStat(
        'TLS handshakes failing',
        'count(min by (%s) (gateway_tls_handshake_success{%s}) == 0)' % [k.by(['hostname', 'ip', 'port']), m()],
        'Hostname and address pairs where a TLS handshake with the hostname as SNI fails.',
      ),
      k.countStat(
        'Hostname conflicts',
        'count(max by (%s) (gateway_dns_conflict{%s}) == 1)' % [k.by(['hostname']), m()],
        'Hostnames that routes on different Gateways claim.',
        'orange',
      ),
      // ALERTS has no job label once an alert aggregates it away: the mixin's alert names select.
      k.labelTable(
        'Firing alerts',
        ['alertname', 'severity'],
        [g.column(
          'Firing',
          'count by (alertname, severity) (ALERTS{alertstate="firing", alertname=~"%s", %s})' % [std.join('|', alertNames), k.rm()],
        )],
        labelProps={
          severity: g.colorBackground {
            mappings: g.valueMappings({ critical: ['critical', 'red'], warning: ['warning', 'orange'], info: ['info', 'blue'] }),
          },
        },
        description="The mixin's alerts that fire now, with how many series each. Their labels name what fails; see the rows below.",
      )
      + g.size(24, 5),
      // One row per failing load balancer IP ("namespace/service ip") or hostname and cause.
      k.labelTable(
        'Failing, by cause',
        ['cause', 'target'],
        [g.column(
          'Instances',
          |||
            count by (%(by)s) (
              label_join(label_join(loadbalancer_diagnosis_info{cause!="ok", %(m)s}, "target", "/", "namespace", "service"), "target", " ", "target", "ip")
              or
              label_replace(gateway_hostname_diagnosis_info{cause!="ok", %(m)s}, "target", "$1", "hostname", "(.+)")
            )
          ||| % { by: k.by(['cause', 'target']), m: m() },
        )],
        labelProps={ cause: { links: [g.link('Runbook: what lbprobe saw and what to do', c.runbookURLPattern % 'diagnosis-${__value.raw}')] } },
        description='Every load balancer IP and hostname whose diagnosis chain has a failed step, by the cause of the first one (loadbalancer_diagnosis_info, gateway_hostname_diagnosis_info), with how many lbprobe instances see it. Click a cause for its runbook section; `lbprobe diagnose TARGET` prints the whole chain and the fix.',
      )
      + g.sortBy('cause')
      + g.size(24, 8),
    ],

    // One row per LoadBalancer IP; a Service's lease (holder, renew age) joins each of its IPs.
    local ips = [
      g.row('LoadBalancer IPs'),
      k.labelTable(
        'LoadBalancer IPs',
        ['namespace', 'service', 'ip', 'implementation', 'node', 'holder'],
        [
          k.stateColumn('Reachable', 'min by (%s) (loadbalancer_reachable{%s})' % [ip, m()]),
          // Who should announce the Service's IPs: the implementation and its node.
          g.labelsOnly('max by (%s) (loadbalancer_announcer_info{%s})' % [k.by(['namespace', 'service', 'implementation', 'node']), m()]),
          k.stateColumn('Announced', 'max by (%s) (loadbalancer_l2_announced{%s})' % [ip, m()]),
          k.stateColumn('ARP', 'min by (%s) (loadbalancer_arp_reachable{%s})' % [ip, m()]),
          k.stateColumn('Route OK', 'min by (%s) (loadbalancer_route_ok{%s})' % [ip, m()]),
          g.column(
            'Lease renewed',
            'max by (%s) (loadbalancer_l2_lease_renew_age_seconds{%s})' % [k.by(['namespace', 'service', 'holder']), m()],
            { unit: 's', decimals: 0 },
          ),
        ],
        labelProps={ service: k.rowLink('Service details', 'service', ['namespace', 'service']), node: { displayName: 'announcer' } },
        description="Every probed LoadBalancer IP, the worst state any lbprobe instance sees: Reachable (a probed port answered), Announced (its Cilium L2 lease is live), ARP (a host answered ARP or NDP; only with --probe.arp.interface), Route OK (the route goes through the expected interface), the L2 implementation (cilium, metallb, kube-vip) and the node it names as the announcer, Cilium's lease holder and how long ago it renewed the lease. Empty cells: not probed, or not that implementation's. Click a Service for its details.",
      )
      + g.sortBy('Reachable')
      + g.size(24, 12),
    ],

    local gateways = [
      g.row('Gateways'),
      k.labelTable(
        'Gateways',
        ['namespace', 'gateway', 'gateway_class'],
        [
          g.labelsOnly('max by (%s) (gateway_info{%s})' % [k.by(['namespace', 'gateway', 'gateway_class']), m()]),
          k.stateColumn('Programmed', 'max by (%s) (gateway_programmed{%s})' % [gw, m()]),
          k.stateColumn('Addresses', 'max by (%s) (gateway_address_mismatch{%s})' % [gw, m()], 'as requested', 'MISMATCH', good=0),
          k.stateColumn('Listeners reachable', 'min by (%s) (gateway_listener_reachable{%s})' % [gw, m()]),
        ],
        labelProps={ gateway: k.rowLink('Gateway details', 'gateway', ['namespace', 'gateway']) },
        description='Every Gateway: Programmed condition, whether it got the addresses it asks for, and whether all its listeners answer every lbprobe instance. Click a Gateway for its details.',
      )
      + g.sortBy('Listeners reachable')
      + g.size(24, 8),
    ],

    local poolsAndLeases = [
      g.row('IP pools and L2 leases'),
      g.barGauge(
        'Pool usage',
        [g.target(
          |||
            max by (%(pool)s) (loadbalancer_pool_ips{%(m)s, state="used"})
            / max by (%(pool)s) (loadbalancer_pool_ips{%(m)s, state="total"} > 0)
          ||| % { pool: k.by(['pool']), m: m() },
          '{{pool}}',
        )],
        'Share of the IPs of each CiliumLoadBalancerIPPool that are in use.',
      )
      + g.unit('percentunit') + g.max(1)
      + g.thresholds(g.steps([['green', null], ['orange', 0.8], ['red', 0.95]]))
      + g.size(8, 8),
      g.timeseries(
        'Pool IPs',
        [
          g.target('max by (%s) (loadbalancer_pool_ips{%s, state="used"})' % [k.by(['pool']), m()], '{{pool}} used'),
          g.target('max by (%s) (loadbalancer_pool_ips{%s, state="total"})' % [k.by(['pool']), m()], '{{pool}} total'),
        ],
        'IPs used and in all, per pool.',
      )
      + g.overrides([g.override(g.byQuery(1), g.dashed)])
      + g.min(0) + g.decimals(0)
      + g.size(8, 8),
      g.barGauge(
        'L2 leases per node',
        [g.target(
          'count by (%s) (max by (%s) (loadbalancer_l2_lease_renew_age_seconds{%s}))' % [k.by(['holder']), k.by(['namespace', 'service', 'lease', 'holder']), m()],
          '{{holder}}',
        )],
        'How many L2 announcement leases each node holds: the LoadBalancer IPs it answers ARP for.',
      )
      + g.thresholds(g.steps([['blue', null]])) + g.decimals(0)
      + g.size(8, 8),
      k.labelTable(
        'L2 lease holder changes',
        ['namespace', 'service', 'lease', 'holder'],
        [
          g.column(
            'Changes',
            'round(increase(namespace_service_lease:loadbalancer_l2_lease_transitions:max{%s}[$__range])) > 0' % k.rm(),
            g.colorText { thresholds: g.steps([['text', null], ['orange', 1], ['red', c.leaseFlapTransitions]]) },
          ),
          // The current holder and how long it has held the lease, for the leases that changed.
          g.column(
            'Held for',
            |||
              max by (%(lease)s, holder) (loadbalancer_l2_lease_age_seconds{%(m)s})
              and on (%(lease)s)
              round(increase(namespace_service_lease:loadbalancer_l2_lease_transitions:max{%(rm)s}[$__range])) > 0
            ||| % { lease: lease, m: m(), rm: k.rm() },
            { unit: 's', decimals: 0 },
          ),
        ],
        labelProps={ service: k.rowLink('Service details', 'service', ['namespace', 'service']) },
        description='L2 leases whose holder changed in the time range (spec.leaseTransitions went up): each change moved the IP to another node and broke open connections. Orange from 1 change, red from %d (LoadBalancerL2LeaseFlapping counts them per %s).' % [c.leaseFlapTransitions, c.leaseFlapWindow],
      )
      + g.sortBy('Changes', desc=true)
      + g.size(24, 8),
    ],


    local availability = [
      g.row('Availability'),
      k.labelTable(
        'Service availability',
        ['namespace', 'service'],
        k.availabilityColumns('namespace_service', 'loadbalancer_reachable'),
        labelProps={ service: k.rowLink('Service details', 'service', ['namespace', 'service']) },
        description='Share of probes (every lbprobe instance and IP of the Service) that reached the Service, over each window.',
      )
      + g.sortBy(k.lastWindow)
      + g.size(12, 10),
      k.labelTable(
        'Hostname availability (DNS)',
        ['hostname'],
        k.availabilityColumns('hostname', 'gateway_dns_answer_correct'),
        description='Share of DNS checks (every server and lbprobe instance) that answered the hostname with exactly the expected addresses, over each window.',
      )
      + g.sortBy(k.lastWindow)
      + g.size(12, 10),
    ],

    'lbprobe-overview.json': k.dashboard(
      'overview',
      'Overview',
      'LoadBalancer IPs, Gateways, IP pools and L2 leases as lbprobe sees them.',
      [],
      summary + ips + gateways + poolsAndLeases + availability,
    ),
  },
}
