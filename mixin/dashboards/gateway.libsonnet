local g = import '../lib/dashboard.libsonnet';

// One Gateway: its status, its listeners, and the DNS answers and TLS certificates of the hostnames
// its routes claim. DNS and TLS series carry the hostname and the route (namespace, name), not the
// Gateway: the hostname variable (from gateway_dns_hostname_claim_info) selects them.
{
  grafanaDashboards+:: {
    local c = $._config,
    local k = (import 'common.libsonnet')(c),
    local gwMatchers = ['namespace="$namespace"', 'gateway="$gateway"'],
    local hostMatchers = ['hostname=~"$hostname"'],
    // Matchers of the selected Gateway's series, and of its hostnames' series.
    local gm(extra=[]) = k.m(gwMatchers + extra),
    local hm(extra=[]) = k.m(hostMatchers + extra),
    local inst = k.instance,
    local byInstance = k.byInstance,

    local status = [
      g.row('Gateway'),
      g.stat('Programmed', [g.target('max by (%s) (gateway_programmed{%s})' % [k.by([]), gm()])], 'Whether the Programmed condition of the Gateway is True.')
      + g.mappings(k.state('Programmed', 'NOT PROGRAMMED'))
      + g.size(4, 5),
      g.stat('Requested addresses', [g.target('max by (%s) (gateway_address_mismatch{%s})' % [k.by([]), gm()])], 'Whether the status addresses are the spec.addresses the Gateway asks for (when it asks for some).')
      + g.mappings(k.state('as requested', 'MISMATCH', good=0))
      + g.size(4, 5),
      g.stat('Listeners reachable', [g.target('min by (%s) (gateway_listener_reachable{%s})' % [k.by([]), gm()])], 'Whether every listener answers every lbprobe instance now.')
      + g.mappings(k.okFail)
      + g.size(4, 5),
      k.labelTable(
        'Addresses',
        ['gateway_class', 'address'],
        [g.labelsOnly('max by (%s) (gateway_info{%s})' % [k.by(['gateway_class', 'address']), gm()])],
        description="The Gateway's class and status addresses.",
      )
      + g.size(12, 5),
    ] + [
      k.availabilityStat(
        'Listener availability %s' % r.window,
        '%s{%s}' % [r.rule, k.rm(gwMatchers)],
        'Share of the listener probes (every lbprobe instance and listener) that connected over the last %s.' % r.window,
      )
      + g.size(std.floor(24 / std.length(c.availabilityWindows)), 4)
      for r in k.availabilityRules('namespace_gateway', 'gateway_listener_reachable')
    ],

    local listenerLegend = '{{listener}} {{address}}:{{port}} %s' % inst,
    local listeners = [
      g.row('Listeners'),
      g.stateTimeline('Listener reachability', [g.target('gateway_listener_reachable{%s}' % gm(), listenerLegend)], 'Whether a TCP connect to each listener address succeeded (UDP listeners are not probed).')
      + g.mappings(k.okFail)
      + g.size(24, 7),
      g.timeseries('Listener probe duration', [g.target('gateway_listener_probe_duration_seconds{%s}' % gm(), listenerLegend)], 'How long each listener probe took.')
      + g.unit('s') + g.min(0) + g.legendTable(),
      k.labelTable(
        'Listener failures',
        k.instanceLabels + ['listener', 'address', 'port', 'reason'],
        [g.column(
          'Failed probes',
          'sum by (%s) (count_over_time(gateway_listener_failure_info{%s}[$__range]))' % [byInstance(['listener', 'address', 'port', 'reason']), gm()],
        )],
        description='Listener probes that failed in the time range, per reason.',
      )
      + g.sortBy('Failed probes', desc=true),
    ],

    local dnsLegend = '{{hostname}} @ {{server}} %s' % inst,
    local dns = [
      g.row('DNS'),
      k.labelTable(
        'DNS answers',
        k.instanceLabels + ['hostname', 'server', 'result', 'answer', 'expected'],
        [
          g.labelsOnly('max by (%s) (gateway_dns_answer_result{%s})' % [byInstance(['hostname', 'server', 'result']), hm()]),
          g.labelsOnly('max by (%s) (gateway_dns_answer_info{%s})' % [byInstance(['hostname', 'server', 'answer', 'expected']), hm()]),
        ],
        labelProps={
          result: g.colorBackground {
            mappings: g.valueMappings({ correct: ['correct', 'green'] }) + [g.regexMapping('.+', 'red', 1)],
          },
        },
        description="Each DNS server's latest answer for each hostname: the result (correct, wrong_address, missing_address, extra_address, nxdomain, servfail, refused, timeout, error), the addresses it answered and those expected (the Gateways' addresses).",
      )
      + g.size(24, 8),
      g.stateTimeline('DNS answer correct', [g.target('gateway_dns_answer_correct{%s}' % hm(), dnsLegend)], 'Whether each server answered each hostname with exactly the expected addresses.')
      + g.mappings(k.state('correct', 'WRONG'))
      + g.size(24, 7),
      g.timeseries('DNS lookup duration', [g.target('gateway_dns_lookup_duration_seconds{%s}' % hm(), dnsLegend)], 'How long the lookups (A and AAAA, CNAMEs followed) took.')
      + g.unit('s') + g.min(0) + g.legendTable(),
      k.labelTable(
        'DNS availability',
        ['hostname'],
        k.availabilityColumns('hostname', 'gateway_dns_answer_correct', hostMatchers),
        description='Share of the DNS checks (every server and lbprobe instance) that answered the hostname correctly, over each window.',
      )
      + g.sortBy(k.lastWindow),
      k.labelTable(
        'Hostname claims',
        ['hostname', 'gateway_namespace', 'gateway', 'namespace', 'route'],
        [
          g.labelsOnly('max by (%s) (gateway_dns_hostname_claim_info{%s})' % [k.by(['hostname', 'gateway_namespace', 'gateway', 'namespace', 'route']), hm()]),
          k.stateColumn('Conflict', 'max by (%s) (gateway_dns_conflict{%s})' % [k.by(['hostname']), hm()], 'no', 'CONFLICT', good=0),
        ],
        description='Every route that claims the hostnames, on this Gateway or another: when routes on different Gateways claim a hostname, k8s_gateway answers with the addresses of all of them.',
      )
      + g.sortBy('Conflict', desc=true)
      + g.size(24, 6),
    ],

    local tlsLegend = '{{hostname}} {{ip}}:{{port}} %s' % inst,
    local tlsBy = k.by(['hostname', 'ip', 'port']),
    local expirySeconds = c.tlsCertExpiryDays * 86400,
    local tls = [
      g.row('TLS'),
      k.labelTable(
        'Certificates',
        ['hostname', 'ip', 'port'],
        [
          k.stateColumn('Handshake', 'min by (%s) (gateway_tls_handshake_success{%s})' % [tlsBy, hm()]),
          k.stateColumn('Verified', 'min by (%s) (gateway_tls_cert_verified{%s})' % [tlsBy, hm()]),
          k.stateColumn('Covers hostname', 'min by (%s) (gateway_tls_cert_covers_hostname{%s})' % [tlsBy, hm()], 'yes', 'NO'),
          g.column(
            'Expires in',
            'min by (%s) (gateway_tls_cert_not_after_timestamp_seconds{%s}) - time()' % [tlsBy, hm()],
            g.colorText { unit: 'dtdurations', thresholds: g.steps([['red', null], ['orange', 0], ['green', expirySeconds]]) },
          ),
        ],
        description='The certificate each address serves for each hostname (SNI), the worst any lbprobe instance sees: handshake completed, chain, validity and name verified, leaf names cover the hostname, and time until notAfter (orange under %d days, red once expired).' % c.tlsCertExpiryDays,
      )
      + g.sortBy('Expires in')
      + g.size(24, 8),
      g.stateTimeline('TLS handshake', [g.target('gateway_tls_handshake_success{%s}' % hm(), tlsLegend)], 'Whether the TLS handshake with the hostname as SNI completed.')
      + g.mappings(k.okFail),
      g.timeseries(
        'Certificate expiry',
        [g.target('min by (%s) (gateway_tls_cert_not_after_timestamp_seconds{%s}) - time()' % [k.by(['hostname']), hm()], '{{hostname}}')],
        'Time until the earliest notAfter of the certificates served for each hostname; red below the %d days of GatewayTLSCertExpiringSoon.' % c.tlsCertExpiryDays,
      )
      + g.unit('s')
      + g.thresholds(g.steps([['red', null], ['transparent', expirySeconds]]))
      + g.thresholdsStyle('area'),
      k.labelTable(
        'TLS failures',
        k.instanceLabels + ['hostname', 'ip', 'port', 'reason'],
        [g.column(
          'Failed checks',
          'sum by (%s) (count_over_time(gateway_tls_failure_info{%s}[$__range]))' % [byInstance(['hostname', 'ip', 'port', 'reason']), hm()],
        )],
        description='TLS checks that failed in the time range, per reason: handshake_failed, cert_expired, cert_not_yet_valid, cert_hostname_mismatch, cert_untrusted, or a TCP reason.',
      )
      + g.sortBy('Failed checks', desc=true),
      g.timeseries('TLS probe duration', [g.target('gateway_tls_probe_duration_seconds{%s}' % hm(), tlsLegend)], 'How long connect and handshake took.')
      + g.unit('s') + g.min(0) + g.legendTable(),
    ],

    'lbprobe-gateway.json': k.dashboard(
      'gateway',
      'Gateway',
      'One Gateway: status, listeners, and the DNS answers and TLS certificates of the hostnames its routes claim.',
      [
        g.queryVariable('namespace', 'Namespace', 'label_values(gateway_info{%s}, namespace)' % k.m()),
        g.queryVariable('gateway', 'Gateway', 'label_values(gateway_info{%s}, gateway)' % k.m(['namespace="$namespace"'])),
        g.queryVariable(
          'hostname',
          'Hostname',
          'label_values(gateway_dns_hostname_claim_info{%s}, hostname)' % k.m(['gateway_namespace="$namespace"', 'gateway="$gateway"']),
          multi=true,
          includeAll=true,
        ),
      ],
      status + listeners + dns + tls,
    ),
  },
}
