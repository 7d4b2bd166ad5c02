local promql = import '../lib/promql.libsonnet';

// The alerts. Every alert has severity, summary, description and runbook_url (docs/runbook.md has a
// section per alert); thresholds, `for` durations and severities come from _config.
{
  prometheusAlerts+:: {
    local c = $._config,
    local sel = c.lbprobeSelector,
    local cl = c.clusterLabel,
    local ns = c.ciliumNamespace,
    // Labels of one lbprobe instance's series of one thing (a join between a prober's own series).
    local same(extra) = promql.labels([cl] + c.instanceLabels + extra),
    // Labels of one Kubernetes object: state series are the same from every lbprobe instance.
    local obj(extra) = promql.labels([cl] + extra),
    local svc = obj(['namespace', 'service']),
    // A state series (from the Kubernetes API) of the lbprobe instances whose every informer is in
    // sync: an instance that lost the API server serves its last state, and its lease ages keep
    // growing, so without this it would page "expired" for every lease (LBProbeKubernetesNotSynced
    // tells about that instance instead).
    local inSync = promql.labels([cl] + c.instanceLabels),
    local state(selector) = '(%s and on (%s) (min by (%s) (lbprobe_kubernetes_synced{%s}) == 1))' % [selector, inSync, inSync, sel],

    local lease = 'cilium-l2announce-{{ $labels.namespace }}-{{ $labels.service }}',

    // A label of the first series a template query returns, for descriptions: the alert's own
    // labels stay stable (its `for` keeps running) while a failure reason, an answer or the lease
    // holder changes. The query matches the alert's labels named in `matchers` and the cluster.
    //   none:   printed when the query returns nothing;
    //   empty:  printed when the label is empty (null: print it as it is);
    //   wrap:   applied to the selector, e.g. 'bottomk(1, %s)'.
    local queryLabel(metric, matchers, label, none='unknown', empty=null, prefix='', wrap='%s') =
      local all = [cl] + matchers;
      local selector = '%(metric)s{%(sel)s,%(matchers)s}' % {
        metric: metric,
        sel: sel,
        matchers: std.join(',', ['%s="%%s"' % m for m in all]),
      };
      '{{ with printf `%(query)s` %(args)s | query }}{{ with first . }}%(prefix)s%(value)s{{ end }}{{ else }}%(none)s{{ end }}' % {
        query: wrap % selector,
        args: std.join(' ', ['$labels.%s' % m for m in all]),
        prefix: prefix,
        value: if empty == null then '{{ .Labels.%s }}' % label else '{{ or .Labels.%s "%s" }}' % [label, empty],
        none: none,
      },
    // $impl and $node: the Service's L2 implementation and the node it names as the announcer
    // (loadbalancer_announcer_info), for the texts that differ by implementation; "cilium" and ""
    // when lbprobe knows none. A description that uses byImpl starts with announcerVars.
    local announcerVars =
      local all = [cl, 'namespace', 'service'];
      '{{ $impl := "cilium" }}{{ $node := "" }}{{ with printf `loadbalancer_announcer_info{%(sel)s,%(matchers)s}` %(args)s | query }}{{ with first . }}{{ $impl = .Labels.implementation }}{{ $node = .Labels.node }}{{ end }}{{ end }}' % {
        sel: sel,
        matchers: std.join(',', ['%s="%%s"' % m for m in all]),
        args: std.join(' ', ['$labels.%s' % m for m in all]),
      },
    // The text for $impl: t.cilium, t.metallb, t['kube-vip'] (each defaults to Cilium's).
    local byImpl(t) =
      '{{ if eq $impl "metallb" }}%s{{ else if eq $impl "kube-vip" }}%s{{ else }}%s{{ end }}' % [
        std.get(t, 'metallb', t.cilium),
        std.get(t, 'kube-vip', t.cilium),
        t.cilium,
      ],
    // The node the implementation names as the announcer, or "no node".
    local announcerNode = '{{ if $node }}node {{ $node }}{{ else }}no node{{ end }}',
    local restartSpeaker = 'kubectl -n metallb-system delete pod -l component=speaker --field-selector spec.nodeName={{ $node }}',
    local kubeVIPOn = "kube-vip's pod on {{ $node }} (kubectl get pods -A -o wide --field-selector spec.nodeName={{ $node }} | grep kube-vip)",

    // The fix of each diagnosis cause of a load balancer IP (collector/diagnosis; docs/runbook.md,
    // "Diagnosis causes"), with the alert's names filled in, in the words of the Service's
    // implementation where they differ (as collector/diagnosis words them). `lbprobe diagnose`
    // prints the same with what it saw (renew ages, the MACs that answered).
    local lbFixes = {
      ip_pending: 'LB-IPAM gave it no IP: kubectl get ciliumloadbalancerippools; kubectl -n {{ $labels.namespace }} describe service {{ $labels.service }}.',
      ip_not_requested_one: 'it has {{ $labels.ip }}, not the IP it requests (LoadBalancerRequestedIPNotAssigned): free that IP and recreate the Service, or point the clients at {{ $labels.ip }}.',
      no_policy: {
        cilium: 'no CiliumL2AnnouncementPolicy selects it: create one or fix its serviceSelector (kubectl get ciliuml2announcementpolicies -o yaml), then kubectl -n %(ns)s delete lease %(lease)s.',
        metallb: "no L2Advertisement announces the IPAddressPool its IP came from, so MetalLB never announces it: create one, or add the pool to one's ipAddressPools or ipAddressPoolSelectors (kubectl get l2advertisements -A -o yaml).",
      },
      policy_no_node: {
        cilium: 'the nodeSelector of its L2 policy matches no node: fix it (kubectl get nodes --show-labels).',
        metallb: 'the nodeSelectors of the L2Advertisements of its pool match no node: fix them (kubectl get nodes --show-labels).',
      },
      policy_interface_mismatch: "its L2 policy's interfaces match none of the node's: fix spec.interfaces, then kubectl -n %(ns)s delete lease %(lease)s.",
      not_announced: {
        cilium: 'no node holds the lease %(lease)s: check that the Cilium agents run with l2announcements enabled and that the policy selects them (kubectl -n %(ns)s logs ds/cilium | grep -i l2).',
        metallb: 'no MetalLB speaker announces it (no ServiceL2Status): check that speakers run on the nodes the L2Advertisement selects (kubectl -n metallb-system get pods -l component=speaker -o wide) and their logs.',
        'kube-vip': 'no kube-vip instance took it (no live lease, no kube-vip.io/vipHost): check that kube-vip runs with svc_enable on the nodes, and its logs.',
      },
      lease_expired: {
        cilium: 'the lease %(lease)s is stale (last holder: %(holder)s): kubectl -n %(ns)s delete lease %(lease)s, then lbprobe diagnose {{ $labels.namespace }}/{{ $labels.service }}.',
        'kube-vip': "kube-vip's lease of it expired: check kube-vip on its last holder, or delete the lease (kubectl -n %(ns)s get leases | grep kubevip) so another kube-vip takes it.",
      },
      holder_not_ready: {
        cilium: 'the lease %(lease)s is held by %(holder)s, which is not Ready: kubectl -n %(ns)s delete lease %(lease)s so a Ready node takes over.',
        metallb: 'the speaker on %(announcerNode)s announces it, but the node is not Ready: restart it (%(restartSpeaker)s) so another speaker takes over.',
        'kube-vip': 'kube-vip on node {{ $node }} holds it, but the node is not Ready: restart %(kubeVIPOn)s, or delete its lease.',
      },
      holder_silent: {
        cilium: '%(holder)s holds the lease but does not answer ARP for {{ $labels.ip }}: restart its Cilium agent, or kubectl -n %(ns)s delete lease %(lease)s.',
        metallb: "MetalLB's ServiceL2Status names %(announcerNode)s, which does not answer ARP for {{ $labels.ip }}: restart its speaker (%(restartSpeaker)s).",
        'kube-vip': 'kube-vip names node {{ $node }}, which does not answer ARP for {{ $labels.ip }}: restart %(kubeVIPOn)s.',
      },
      split_brain: 'more than one node answers ARP for {{ $labels.ip }} (lbprobe diagnose {{ $labels.ip }} names them): stop the second announcer, or give each Service sharing the IP its own.',
      route_via_tunnel: '{{ $labels.instance }} routes {{ $labels.ip }} through a tunnel, not the LAN: on that host, ip route get {{ $labels.ip }} and remove the route (tailscale set --accept-routes=false).',
      no_route: '{{ $labels.instance }} has no route to {{ $labels.ip }}: ip route get {{ $labels.ip }}.',
      no_ready_backends: "nothing ready serves it: kubectl -n {{ $labels.namespace }} get endpointslices -l kubernetes.io/service-name={{ $labels.service }}, and the pods' readiness.",
      port_refused: 'it is announced but its ports do not answer: check the targetPort, the Gateway listeners and NetworkPolicies (LoadBalancerPortUnreachable).',
    },
    // The verdict of the IP's diagnosis chain (loadbalancer_diagnosis_info of the same instance),
    // its fix and its runbook section, for descriptions that start with announcerVars.
    local diagnosisText(holder) =
      local all = [cl, 'namespace', 'service', 'ip', 'instance'];
      local args = { ns: ns, lease: lease, holder: holder, announcerNode: announcerNode, restartSpeaker: restartSpeaker, kubeVIPOn: kubeVIPOn };
      local fix(cause) =
        local f = lbFixes[cause];
        if std.isString(f) then f % args else byImpl({ [i]: f[i] % args for i in std.objectFields(f) });
      local causes = std.objectFields(lbFixes);
      "{{ with printf `loadbalancer_diagnosis_info{%(sel)s,%(matchers)s}` %(args)s | query }}{{ with first . }}{{ $cause := .Labels.cause }}Diagnosis: {{ $cause }}: %(fixes)s Runbook: %(runbook)s{{ $cause }}.{{ end }}{{ else }}No diagnosis from this instance: first check that the IP is announced (LoadBalancerNotAnnounced, LoadBalancerNoAnnouncer, LoadBalancerARPNoReply), then the Service's endpoints.{{ end }}" % {
        sel: sel,
        matchers: std.join(',', ['%s="%%s"' % m for m in all]),
        args: std.join(' ', ['$labels.%s' % m for m in all]),
        fixes: std.join('', ['{{ %s eq $cause "%s" }}%s' % [if i == 0 then 'if' else 'else if', causes[i], fix(causes[i])] for i in std.range(0, std.length(causes) - 1)])
               + '{{ else }}see the runbook.{{ end }}',
        runbook: c.runbookURLPattern % 'diagnosis-',
      },

    // The Service's current L2 lease holder (the freshest lease), for descriptions.
    local holderText = queryLabel('loadbalancer_l2_lease_renew_age_seconds', ['namespace', 'service'], 'holder', none='nobody (no lease)', prefix='node ', wrap='bottomk(1, %s)'),
    // Who should announce the Service's IPs, for descriptions that start with announcerVars.
    local announcerIs = byImpl({
      cilium: 'The L2 lease holder is %s.' % holderText,
      metallb: "MetalLB's ServiceL2Status names %s as the announcer." % announcerNode,
      'kube-vip': 'kube-vip names %s as the announcer.' % announcerNode,
    }),
    // Who should answer ARP for the Service's IPs and what to restart, for LoadBalancerARPNoReply.
    local announcerText = byImpl({
      cilium: "The lease holder is %s: when it holds the lease but does not answer, its L2 announcer is stuck or the policy's interfaces do not match its NIC. Delete the lease to force a new election: kubectl -n %s delete lease %s." % [holderText, ns, lease],
      metallb: "{{ if $node }}MetalLB's ServiceL2Status names node {{ $node }} as the announcer: when it does not answer, its speaker is stuck or its L2Advertisement's interfaces do not match the NIC. Restart that speaker (%s) and check kubectl get l2advertisements -A -o yaml.{{ else }}No MetalLB speaker announces it (no ServiceL2Status, LoadBalancerNoAnnouncer): check that an L2Advertisement selects its pool and that a speaker runs on a node the advertisement allows.{{ end }}" % restartSpeaker,
      'kube-vip': '{{ if $node }}kube-vip names node {{ $node }} as the announcer (its lease or kube-vip.io/vipHost): when it does not answer, kube-vip there is stuck or bound to another interface (vip_interface). Restart %s.{{ else }}kube-vip names no announcer (no live lease, no kube-vip.io/vipHost; LoadBalancerNoAnnouncer): check that kube-vip runs with svc_enable and that its leader election works.{{ end }}' % kubeVIPOn,
    }),
    // The Services that MetalLB or kube-vip announces: a Cilium lease left over from before
    // says nothing about them.
    local notCilium = 'max by (%s) %s' % [svc, state('loadbalancer_announcer_info{%s,implementation!="cilium"}' % sel)],
    // The DNS check's series: a hostname can be checked for several routes (source, namespace, name).
    local dnsCheck = ['server', 'hostname', 'source', 'namespace', 'name', 'instance'],
    local tlsCheck = ['hostname', 'ip', 'port', 'source', 'namespace', 'name', 'instance'],

    local alert(name, key, expr, summary, description) = {
      alert: name,
      // Multi-line expressions end in a newline: YAML renders them as a block.
      expr: local e = std.rstripChars(expr, '\n'); if std.member(e, '\n') then e + '\n' else e,
      [if c['for'][key] != '0m' then 'for']: c['for'][key],
      labels: { severity: c.severity[key] },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: c.runbookURLPattern % std.asciiLower(name),
      },
    },

    groups+: [
      {
        name: 'lbprobe-loadbalancer',
        rules: [
          alert(
            'LoadBalancerUnreachable',
            'loadBalancerUnreachable',
            'loadbalancer_reachable{%s} == 0' % sel,
            'LoadBalancer IP {{ $labels.ip }} of {{ $labels.namespace }}/{{ $labels.service }} is unreachable.',
            announcerVars + 'None of the probed ports of {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) has answered {{ $labels.instance }} for %s. %s %s' % [c['for'].loadBalancerUnreachable, announcerIs, diagnosisText(holderText)],
          ),
          alert(
            'LoadBalancerPortUnreachable',
            'loadBalancerPortUnreachable',
            |||
              (loadbalancer_port_reachable{%(sel)s} == 0)
              unless on (%(on)s)
              (loadbalancer_reachable{%(sel)s} == 0)
            ||| % { sel: sel, on: same(['namespace', 'service', 'ip']) },
            'Port {{ $labels.port }}/{{ $labels.protocol }} of {{ $labels.ip }} ({{ $labels.namespace }}/{{ $labels.service }}) is unreachable.',
            '{{ $labels.instance }} cannot reach port {{ $labels.port }}/{{ $labels.protocol }} of {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}): %s, while other ports of the IP answer. refused: nothing listens behind it (endpoints, targetPort, the Gateway listener); timeout: something drops it (a NetworkPolicy, a firewall).' % queryLabel('loadbalancer_probe_failure_info', ['namespace', 'service', 'ip', 'port', 'protocol', 'instance'], 'reason'),
          ),
          alert(
            'LoadBalancerIPPending',
            'loadBalancerIPPending',
            'max by (%s) %s == 0' % [svc, state('loadbalancer_ip_assigned{%s}' % sel)],
            'LoadBalancer Service {{ $labels.namespace }}/{{ $labels.service }} has no IP.',
            "Service {{ $labels.namespace }}/{{ $labels.service }} of type LoadBalancer has had no ingress IP for %s: LB-IPAM assigned none. A pool is exhausted (LoadBalancerPoolExhausted) or in conflict (LoadBalancerPoolConflict), or no pool's serviceSelector matches the Service. Run: kubectl -n {{ $labels.namespace }} describe service {{ $labels.service }}; kubectl get ciliumloadbalancerippools." % c['for'].loadBalancerIPPending,
          ),
          alert(
            'LoadBalancerRouteUnexpected',
            'loadBalancerRouteUnexpected',
            promql.withInfo('loadbalancer_route_ok{%s} == 0' % sel, same(['namespace', 'service', 'ip']), 'loadbalancer_route_info{%s}' % sel, 'interface, gateway'),
            '{{ $labels.instance }} routes {{ $labels.ip }} through an unexpected interface.',
            '{{ $labels.instance }} routes {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) through {{ with $labels.interface }}interface {{ . }}{{ else }}no interface{{ end }}{{ with $labels.gateway }} via {{ . }}{{ end }}, not the expected LAN interface, so its probes test that path (a Tailscale subnet route, a VPN) instead of the LAN. On that host run: ip route get {{ $labels.ip }}; remove the overlapping route (tailscale up --accept-routes=false).',
          ),
          alert(
            'LoadBalancerRequestedIPNotAssigned',
            'loadBalancerRequestedIPNotAssigned',
            'max by (%s) %s == 0' % [obj(['namespace', 'service', 'ip']), state('loadbalancer_requested_ip_assigned{%s}' % sel)],
            'Service {{ $labels.namespace }}/{{ $labels.service }} did not get the IP {{ $labels.ip }} it requests.',
            'Service {{ $labels.namespace }}/{{ $labels.service }} requests {{ $labels.ip }} (lbipam.cilium.io/ips, io.cilium/lb-ipam-ips or spec.loadBalancerIP) but LB-IPAM did not assign it (%s). Whatever points at {{ $labels.ip }} (a router forwarding the domain to k8s_gateway, a DNS record, a firewall rule) misses the Service while its probes pass. no_pool: no enabled pool holds the IP (disabled and conflicting pools count as none); already_allocated: another Service has it; pool_selector_mismatch: the pool does not select the Service. Run: kubectl -n {{ $labels.namespace }} get service {{ $labels.service }} -o jsonpath={.status.conditions}.' % queryLabel('loadbalancer_ipam_request_info', ['namespace', 'service'], 'reason', none='LB-IPAM wrote no condition'),
          ),
          alert(
            'LoadBalancerNoReadyBackends',
            'loadBalancerNoReadyBackends',
            |||
              max by (%(svc)s) %(backends)s == 0
              and
              max by (%(svc)s) %(assigned)s == 1
            ||| % { svc: svc, backends: state('loadbalancer_backends_ready{%s}' % sel), assigned: state('loadbalancer_ip_assigned{%s}' % sel) },
            'Nothing serves behind {{ $labels.namespace }}/{{ $labels.service }}.',
            'Service {{ $labels.namespace }}/{{ $labels.service }} has a LoadBalancer IP but no ready endpoint (for a Gateway Service: none behind the backendRefs of its routes, gateway_route_backends_ready): the IP may be announced while every connect is refused or hangs. Run: kubectl -n {{ $labels.namespace }} get endpointslices -l kubernetes.io/service-name={{ $labels.service }}; check the pods its selector matches.',
          ),
        ],
      },
      {
        name: 'lbprobe-l2',
        rules: [
          alert(
            'LoadBalancerNotAnnounced',
            'loadBalancerNotAnnounced',
            'max by (%s) %s == 0' % [obj(['namespace', 'service', 'ip']), state('loadbalancer_l2_announced{%s}' % sel)],
            'LoadBalancer IP {{ $labels.ip }} of {{ $labels.namespace }}/{{ $labels.service }} is not announced.',
            'Service {{ $labels.namespace }}/{{ $labels.service }} has IP {{ $labels.ip }} and a CiliumL2AnnouncementPolicy selects it, but no node holds a live lease %(lease)s in %(ns)s: nothing answers ARP for {{ $labels.ip }} and the LAN cannot reach it. Often the policy was created after the Service. Delete the lease (kubectl -n %(ns)s delete lease %(lease)s) or restart the Cilium agents so that they elect a holder.' % { lease: lease, ns: ns },
          ),
          alert(
            'LoadBalancerNoAnnouncer',
            'loadBalancerNoAnnouncer',
            |||
              max by (%(svc)s, implementation) %(announcer)s == 1
              and on (%(svcOn)s)
              max by (%(svc)s) %(assigned)s == 1
            ||| % { svc: svc, svcOn: svc, announcer: state('loadbalancer_announcer_info{%s,implementation=~"metallb|kube-vip",node=""}' % sel), assigned: state('loadbalancer_ip_assigned{%s}' % sel) },
            'No {{ $labels.implementation }} node announces {{ $labels.namespace }}/{{ $labels.service }}.',
            'Service {{ $labels.namespace }}/{{ $labels.service }} has a LoadBalancer IP, but {{ $labels.implementation }} names no node that announces it (MetalLB: no ServiceL2Status, so no speaker took it, or no L2Advertisement announces its pool; kube-vip: no live kubevip-{{ $labels.service }} lease and no kube-vip.io/vipHost): nothing answers ARP for it. Run lbprobe diagnose {{ $labels.namespace }}/{{ $labels.service }} for the step that fails.',
          ),
          alert(
            'LoadBalancerNoL2Policy',
            'loadBalancerNoL2Policy',
            |||
              max by (%(svc)s) %(policies)s == 0
              and
              max by (%(svc)s) %(assigned)s == 1
            ||| % { svc: svc, policies: state('loadbalancer_l2_policies{%s}' % sel), assigned: state('loadbalancer_ip_assigned{%s}' % sel) },
            'No L2 announcement policy selects {{ $labels.namespace }}/{{ $labels.service }}.',
            "Service {{ $labels.namespace }}/{{ $labels.service }} has a LoadBalancer IP but no CiliumL2AnnouncementPolicy selects it (serviceSelector, loadBalancerIPs: true), so no node announces it on the LAN. Compare the policies' serviceSelector with the Service's labels: kubectl get ciliuml2announcementpolicies -o yaml.",
          ),
          alert(
            'LoadBalancerL2LeaseExpired',
            'loadBalancerL2LeaseExpired',
            |||
              max by (%(lease)s) (loadbalancer_l2_lease_renew_age_seconds{%(sel)s})
              and
              max by (%(lease)s) %(expired)s == 1
              unless on (%(svc)s)
              max by (%(svc)s) %(policies)s == 0
              unless on (%(svc)s)
              %(notCilium)s
            ||| % {
              lease: obj(['namespace', 'service', 'lease', 'holder']),
              svc: svc,
              sel: sel,
              // A released lease (no holder), the lease of a Service no policy selects any more
              // and that of a Service MetalLB or kube-vip now announces are expired on purpose.
              expired: state('loadbalancer_l2_lease_expired{%s,holder!=""}' % sel),
              policies: state('loadbalancer_l2_policies{%s}' % sel),
              notCilium: notCilium,
            },
            'L2 lease {{ $labels.lease }} has expired.',
            'Node {{ $labels.holder }} holds lease {{ $labels.lease }} (Service {{ $labels.namespace }}/{{ $labels.service }}) but last renewed it {{ $value | humanizeDuration }} ago, longer than its duration, and no other node took it over: the IP is announced, if at all, by an agent that stopped working. Check the Cilium agent on {{ $labels.holder }}; delete the stale lease to force an election: kubectl -n %s delete lease {{ $labels.lease }}.' % ns,
          ),
          alert(
            'LoadBalancerL2LeaseHolderNotReady',
            'loadBalancerL2LeaseHolderNotReady',
            |||
              max by (%(lease)s) %(ready)s == 0
              unless on (%(svc)s)
              %(notCilium)s
            ||| % { lease: obj(['namespace', 'service', 'lease', 'holder']), svc: svc, ready: state('loadbalancer_l2_lease_holder_ready{%s,holder!=""}' % sel), notCilium: notCilium },
            'L2 lease {{ $labels.lease }} is held by node {{ $labels.holder }}, which is not Ready.',
            'Lease {{ $labels.lease }} (Service {{ $labels.namespace }}/{{ $labels.service }}) is held by node {{ $labels.holder }}, whose Ready condition is not True. Its agent may still renew the lease while the node cannot serve. Check the node (kubectl describe node {{ $labels.holder }}); cordon it and delete the lease to move the IP: kubectl -n %s delete lease {{ $labels.lease }}.' % ns,
          ),
          alert(
            'LoadBalancerL2LeaseFlapping',
            'loadBalancerL2LeaseFlapping',
            // increase(): takeovers between two evaluations all count, and a lease deleted and
            // recreated (transitions back to 0) is a counter reset, not a negative change.
            'increase(namespace_service_lease:loadbalancer_l2_lease_transitions:max[%s]) >= %d' % [c.leaseFlapWindow, c.leaseFlapTransitions],
            'L2 lease {{ $labels.lease }} keeps changing holder.',
            'Lease {{ $labels.lease }} (Service {{ $labels.namespace }}/{{ $labels.service }}) changed holder about {{ $value | printf "%%.0f" }} times in %s. Each takeover moves the IP to another MAC and breaks open connections. Look for agents that restart or lose the API server (cilium-agent logs, node pressure), and consider longer l2announcements lease durations.' % c.leaseFlapWindow,
          ),
          alert(
            'LoadBalancerARPNoReply',
            'loadBalancerARPNoReply',
            'loadbalancer_arp_reachable{%s} == 0' % sel,
            'Nobody answers ARP for {{ $labels.ip }} on {{ $labels.interface }}.',
            announcerVars + 'No host on {{ $labels.interface }} answered an ARP who-has (for an IPv6 IP, a Neighbor Solicitation) for {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) from {{ $labels.instance }} for %s. %s' % [c['for'].loadBalancerARPNoReply, announcerText],
          ),
          alert(
            'LoadBalancerNDPModeUnanswered',
            'loadBalancerNDPModeUnanswered',
            |||
              loadbalancer_ndp_answered{%(sel)s} == 0
              and on (%(ip)s)
              loadbalancer_arp_reachable{%(sel)s} == 1
            ||| % { sel: sel, ip: obj(['namespace', 'service', 'ip', 'interface', 'instance']) },
            '{{ $labels.ip }} is answered for on {{ $labels.interface }}, but not to {{ $labels.mode }} Neighbor Solicitations.',
            'Something answers NDP for the IPv6 IP {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) on {{ $labels.interface }}, seen from {{ $labels.instance }}, but not the solicitations sent {{ $labels.mode }} (cilium#41678, cilium#44311): with multicast unanswered new clients cannot resolve it, with unicast unanswered neighbor unreachability detection fails and clients drop it. Upgrade or restart the announcer on the node that holds the IP; lbprobe diagnose {{ $labels.namespace }}/{{ $labels.service }} names it.',
          ),
          alert(
            'LoadBalancerARPSplitBrain',
            'loadBalancerARPSplitBrain',
            'loadbalancer_arp_responders{%s} > 1' % sel,
            '{{ $value }} hosts answer ARP for {{ $labels.ip }}.',
            '{{ $value }} different MAC addresses answer ARP for {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) on {{ $labels.interface }}, seen from {{ $labels.instance }}: clients reach whichever answered last. loadbalancer_arp_responder_info names the MACs and their nodes. Another host uses an address of the pool, or an agent that lost the lease still announces it: restart that agent.',
          ),
          alert(
            'LoadBalancerARPHolderMismatch',
            'loadBalancerARPHolderMismatch',
            // Per interface: on one where nobody or several answer, the other alerts speak.
            |||
              (loadbalancer_arp_holder_match{%(sel)s} == 0)
              unless on (%(on)s)
              (loadbalancer_arp_responders{%(sel)s} != 1)
            ||| % { sel: sel, on: same(['namespace', 'service', 'ip', 'interface']) },
            '{{ $labels.ip }} is answered by a node that should not announce it.',
            announcerVars + 'The only MAC that answers ARP for {{ $labels.ip }} (Service {{ $labels.namespace }}/{{ $labels.service }}) on {{ $labels.interface }} is not the MAC of %s (loadbalancer_arp_responder_info names who answers). %s' % [
              byImpl({ cilium: 'the lease holder, %s' % holderText, metallb: "the node MetalLB's ServiceL2Status names, %s" % announcerNode, 'kube-vip': 'the node kube-vip names, %s' % announcerNode }),
              byImpl({ cilium: 'The node that lost the lease still announces the IP, or another host took it. Restart the Cilium agent on the answering node.', metallb: 'A speaker that lost the IP still announces it, or another host took it. Restart the MetalLB speaker on the answering node.', 'kube-vip': 'A kube-vip that lost the VIP still announces it (without leader election every kube-vip does), or another host took it. Restart kube-vip on the answering node.' }),
            ],
          ),
          alert(
            'LoadBalancerSharedIPSplitBrain',
            'loadBalancerSharedIPSplitBrain',
            'max by (%s) %s > 1' % [obj(['ip']), state('loadbalancer_shared_ip_holders{%s}' % sel)],
            'Two or more nodes announce the shared IP {{ $labels.ip }}.',
            'The Services sharing {{ $labels.ip }} (lbipam.cilium.io/sharing-key) have L2 leases held by {{ $value }} different nodes. Cilium elects a holder per Service, and every holder answers ARP for the IP: the LAN flips between their MACs and connections break (cilium/cilium#48419). loadbalancer_l2_lease_renew_age_seconds names each lease and holder. Give the Services one IP each, or delete their leases until one node holds them all: kubectl -n %s get leases | grep l2announce.' % ns,
          ),
          alert(
            'LoadBalancerL2PolicyNoNodes',
            'loadBalancerL2PolicyNoNodes',
            |||
              max by (%(pol)s) %(nodes)s == 0
              and
              max by (%(pol)s) %(services)s > 0
            ||| % { pol: obj(['policy']), nodes: state('loadbalancer_l2_policy_nodes{%s}' % sel), services: state('loadbalancer_l2_policy_services{%s}' % sel) },
            'L2 announcement policy {{ $labels.policy }} selects no node.',
            "The nodeSelector of CiliumL2AnnouncementPolicy {{ $labels.policy }} matches no Node, so nothing announces the Services it selects (loadbalancer_l2_policy_services). Compare it with the nodes' labels: kubectl get ciliuml2announcementpolicy {{ $labels.policy }} -o yaml; kubectl get nodes --show-labels.",
          ),
          alert(
            'LoadBalancerL2PolicyInterfaceMismatch',
            'loadBalancerL2PolicyInterfaceMismatch',
            'loadbalancer_l2_policy_interfaces_matched{%s} == 0' % sel,
            'L2 policy {{ $labels.policy }} matches no interface of node {{ $labels.node }}.',
            "CiliumL2AnnouncementPolicy {{ $labels.policy }} selects node {{ $labels.node }}, but its interfaces (%s) match none of the node's up interfaces with an IPv4 address, as lbprobe sees them on the node: the node never answers ARP for the Services the policy selects. Fix the pattern (they are unanchored regular expressions: ^eth0$, ^enp.*) to the NIC name, e.g. from ip -br link on the node." % queryLabel('loadbalancer_l2_policy_info', ['policy'], 'interfaces', empty='every device'),
          ),
          alert(
            'LoadBalancerL2PolicyInvalid',
            'loadBalancerL2PolicyInvalid',
            'max by (%s) %s' % [obj(['policy', 'condition']), state('loadbalancer_l2_policy_condition_info{%s,status="True"}' % sel)],
            'Cilium rejects part of L2 policy {{ $labels.policy }}: {{ $labels.condition }}.',
            "Cilium set {{ $labels.condition }} on CiliumL2AnnouncementPolicy {{ $labels.policy }}: a selector or an interface pattern does not parse, and that part of the policy announces nothing. The condition's message says why: kubectl get ciliuml2announcementpolicy {{ $labels.policy }} -o jsonpath={.status.conditions}.",
          ),
        ],
      },
      {
        name: 'lbprobe-gateway',
        rules: [
          alert(
            'GatewayDNSAnswerIncorrect',
            'gatewayDNSAnswerIncorrect',
            |||
              (gateway_dns_answer_correct{%(sel)s} == 0)
              unless on (%(server)s)
              (
                count by (%(server)s) (gateway_dns_answer_result{%(sel)s,result=~"timeout|refused|servfail|error"})
                == count by (%(server)s) (gateway_dns_answer_result{%(sel)s})
              )
            ||| % { sel: sel, server: same(['server']) },
            'DNS server {{ $labels.server }} answers {{ $labels.hostname }} incorrectly.',
            'DNS server {{ $labels.server }} answered {{ $labels.hostname }} with %s (result %s), expected %s, for %s, seen from {{ $labels.instance }}. wrong_address: the route is attached to another Gateway than k8s_gateway answers for, or two Gateways claim the hostname; nxdomain: k8s_gateway does not see the route (parentRefs, the route is not Accepted, its zone); timeout or servfail: the server itself. Compare: dig @{{ reReplaceAll `^\\[?(.*?)\\]?:[0-9]+$` "$1" $labels.server }} -p {{ reReplaceAll `^.*:` "" $labels.server }} {{ $labels.hostname }}.' % [
              queryLabel('gateway_dns_answer_info', dnsCheck, 'answer', empty='no address'),
              queryLabel('gateway_dns_answer_result', dnsCheck, 'result'),
              queryLabel('gateway_dns_answer_info', dnsCheck, 'expected'),
              c['for'].gatewayDNSAnswerIncorrect,
            ],
          ),
          alert(
            'GatewayDNSServerDown',
            'gatewayDNSServerDown',
            |||
              count by (%(server)s) (count by (%(server)s, hostname) (gateway_dns_answer_result{%(sel)s,result=~"timeout|refused|servfail|error"}))
              == count by (%(server)s) (count by (%(server)s, hostname) (gateway_dns_answer_result{%(sel)s}))
            ||| % { sel: sel, server: same(['server']) },
            'DNS server {{ $labels.server }} answers none of the Gateway hostnames.',
            'DNS server {{ $labels.server }} has not answered any of the {{ $value }} hostnames that {{ $labels.instance }} checks on it (timeout, REFUSED, SERVFAIL) for %s: every route hostname fails for clients that use it. If it is k8s_gateway: check its pod and log (SERVFAIL usually means it has not synced the Gateway API resources: RBAC, or a route version the cluster does not serve). If it is the router: check the override that forwards the domain to k8s_gateway.' % c['for'].gatewayDNSServerDown,
          ),
          alert(
            'GatewayDNSHostnameConflict',
            'gatewayDNSHostnameConflict',
            'max by (%s) %s == 1' % [obj(['hostname']), state('gateway_dns_conflict{%s}' % sel)],
            'Routes on different Gateways claim {{ $labels.hostname }}.',
            'HTTPRoutes attached to different Gateways claim {{ $labels.hostname }}, so k8s_gateway answers with the addresses of all of them and clients land on either Gateway. gateway_dns_hostname_claim_info lists the routes; keep the hostname on one Gateway.',
          ),
          alert(
            'GatewayNotProgrammed',
            'gatewayNotProgrammed',
            'max by (%s) %s == 0' % [obj(['namespace', 'gateway']), state('gateway_programmed{%s}' % sel)],
            'Gateway {{ $labels.namespace }}/{{ $labels.gateway }} is not programmed.',
            'The Programmed condition of Gateway {{ $labels.namespace }}/{{ $labels.gateway }} has not been True for %s: its controller has not set it up (no address, an invalid listener, the GatewayClass is not accepted). Run: kubectl -n {{ $labels.namespace }} describe gateway {{ $labels.gateway }}.' % c['for'].gatewayNotProgrammed,
          ),
          alert(
            'GatewayAddressMismatch',
            'gatewayAddressMismatch',
            'max by (%s) %s == 1' % [obj(['namespace', 'gateway']), state('gateway_address_mismatch{%s}' % sel)],
            'Gateway {{ $labels.namespace }}/{{ $labels.gateway }} did not get the address it asks for.',
            'The status addresses of Gateway {{ $labels.namespace }}/{{ $labels.gateway }} differ from its spec.addresses: LB-IPAM could not give it the requested IP (taken, outside every pool), so DNS records and firewall rules that use the requested IP miss it. gateway_info shows the address it has.',
          ),
          alert(
            'GatewayListenerUnreachable',
            'gatewayListenerUnreachable',
            'gateway_listener_reachable{%s} == 0' % sel,
            'Listener {{ $labels.listener }} of Gateway {{ $labels.namespace }}/{{ $labels.gateway }} is unreachable.',
            "{{ $labels.instance }} cannot connect to listener {{ $labels.listener }} of Gateway {{ $labels.namespace }}/{{ $labels.gateway }} on {{ $labels.address }}:{{ $labels.port }} (%s) for %s. Every route on that listener is down from there. Check the Gateway's LoadBalancer Service, its announcement, and the Envoy pods." % [
              queryLabel('gateway_listener_failure_info', ['namespace', 'gateway', 'listener', 'address', 'port', 'instance'], 'reason'),
              c['for'].gatewayListenerUnreachable,
            ],
          ),
          alert(
            'GatewayTLSCertExpiringSoon',
            'gatewayTLSCertExpiringSoon',
            'gateway_tls_cert_not_after_timestamp_seconds{%s} - time() < %d * 86400' % [sel, c.tlsCertExpiryDays],
            'The certificate for {{ $labels.hostname }} expires soon.',
            'The certificate that {{ $labels.ip }}:{{ $labels.port }} serves for {{ $labels.hostname }} expires in {{ $value | humanizeDuration }} (negative: it has expired), less than %d days. Check the cert-manager Certificate behind the Gateway listener (kubectl get certificate -A; kubectl describe certificaterequest) and its ACME challenge.' % c.tlsCertExpiryDays,
          ),
          alert(
            'GatewayTLSHandshakeFailing',
            'gatewayTLSHandshakeFailing',
            'gateway_tls_handshake_success{%s} == 0' % sel,
            'TLS handshakes for {{ $labels.hostname }} on {{ $labels.ip }}:{{ $labels.port }} fail.',
            "A TLS handshake with SNI {{ $labels.hostname }} on {{ $labels.ip }}:{{ $labels.port }} has failed for %s (%s), seen from {{ $labels.instance }}. The listener has no certificate for that hostname (its Secret is missing or invalid), or nothing serves TLS there. Check the Gateway listener's certificateRefs and their Secrets." % [
              c['for'].gatewayTLSHandshakeFailing,
              queryLabel('gateway_tls_failure_info', tlsCheck, 'reason'),
            ],
          ),
          alert(
            'GatewayTLSCertInvalid',
            'gatewayTLSCertInvalid',
            |||
              (gateway_tls_cert_verified{%(sel)s} == 0)
              and on (%(on)s)
              (gateway_tls_handshake_success{%(sel)s} == 1)
            ||| % { sel: sel, on: same(['hostname', 'ip', 'port', 'source', 'namespace', 'name']) },
            'The certificate for {{ $labels.hostname }} on {{ $labels.ip }}:{{ $labels.port }} does not verify.',
            "The certificate served for {{ $labels.hostname }} on {{ $labels.ip }}:{{ $labels.port }} does not verify (%s): clients reject it. cert_hostname_mismatch: the listener serves another hostname's certificate; cert_untrusted: a self-signed or staging certificate; cert_expired: see GatewayTLSCertExpiringSoon." % queryLabel('gateway_tls_failure_info', tlsCheck, 'reason'),
          ),
          alert(
            'GatewayRouteNotAccepted',
            'gatewayRouteNotAccepted',
            'max by (%s) %s == 0' % [obj(['namespace', 'route', 'gateway_namespace', 'gateway', 'section']), state('gateway_route_accepted{%s}' % sel)],
            'Gateway {{ $labels.gateway_namespace }}/{{ $labels.gateway }} refuses HTTPRoute {{ $labels.namespace }}/{{ $labels.route }}.',
            "The controller of Gateway {{ $labels.gateway_namespace }}/{{ $labels.gateway }} did not accept HTTPRoute {{ $labels.namespace }}/{{ $labels.route }}{{ with $labels.section }} for section {{ . }}{{ end }} (%s), but k8s_gateway still answers the route's hostnames with the Gateway's address (their DNS verdict is route_not_accepted). NoMatchingParent: the parentRef's sectionName or port names no listener; NotAllowedByListeners: the listener's allowedRoutes excludes the route's namespace or kind; NoMatchingListenerHostname: no listener hostname covers the route's. Run: kubectl -n {{ $labels.namespace }} get httproute {{ $labels.route }} -o yaml." % queryLabel('gateway_route_status_condition_info', ['namespace', 'route', 'gateway_namespace', 'gateway', 'section'], 'reason'),
          ),
          alert(
            'GatewayRouteRefsUnresolved',
            'gatewayRouteRefsUnresolved',
            'max by (%s) %s == 0' % [obj(['namespace', 'route', 'gateway_namespace', 'gateway', 'section']), state('gateway_route_resolved_refs{%s}' % sel)],
            'HTTPRoute {{ $labels.namespace }}/{{ $labels.route }} names backends that do not resolve.',
            'The controller of Gateway {{ $labels.gateway_namespace }}/{{ $labels.gateway }} reports ResolvedRefs=False for HTTPRoute {{ $labels.namespace }}/{{ $labels.route }}: a backendRefs Service is missing (BackendNotFound), in another namespace without a ReferenceGrant (RefNotPermitted), or of a kind it does not support (InvalidKind). Requests matching the affected rules get a 500. gateway_route_backends_ready shows each backend.',
          ),
          alert(
            'GatewayListenerInvalid',
            'gatewayListenerInvalid',
            |||
              max by (%(l)s) %(programmed)s
              or
              max by (%(l)s) %(refs)s
              or
              max by (%(l)s) %(conflicted)s
            ||| % {
              l: obj(['namespace', 'gateway', 'listener', 'condition', 'status', 'reason']),
              programmed: state('gateway_listener_status_condition_info{%s,condition="Programmed",status="False"}' % sel),
              refs: state('gateway_listener_status_condition_info{%s,condition="ResolvedRefs",status="False"}' % sel),
              conflicted: state('gateway_listener_status_condition_info{%s,condition="Conflicted",status="True"}' % sel),
            },
            'Listener {{ $labels.listener }} of Gateway {{ $labels.namespace }}/{{ $labels.gateway }}: {{ $labels.condition }} {{ $labels.reason }}.',
            "The controller reports {{ $labels.condition }} ({{ $labels.reason }}) for listener {{ $labels.listener }} of Gateway {{ $labels.namespace }}/{{ $labels.gateway }}: the routes attached to it are not served. InvalidCertificateRef: its TLS Secret is missing or invalid (an HTTPS listener without certificateRefs, as the seed's internal Gateway); HostnameConflict or ProtocolConflict: another listener on the port clashes. Run: kubectl -n {{ $labels.namespace }} describe gateway {{ $labels.gateway }}.",
          ),
          alert(
            'GatewayRouteStatusStale',
            'gatewayRouteStatusStale',
            'max by (%s) %s == 1' % [obj(['namespace', 'route', 'gateway_namespace', 'gateway', 'section']), state('gateway_route_status_stale{%s}' % sel)],
            'The status of HTTPRoute {{ $labels.namespace }}/{{ $labels.route }} is out of date.',
            'The conditions the controller of Gateway {{ $labels.gateway_namespace }}/{{ $labels.gateway }} wrote for HTTPRoute {{ $labels.namespace }}/{{ $labels.route }} are for an older generation of the route: the controller has not processed the last change (it is down, or cannot write status). Check the Gateway controller (cilium-operator) logs.',
          ),
        ],
      },
      {
        name: 'lbprobe-pool',
        rules: [
          alert(
            'LoadBalancerPoolExhausted',
            'loadBalancerPoolExhausted',
            |||
              max by (%(pool)s) %(available)s <= %(threshold)d
              and
              max by (%(pool)s) (loadbalancer_pool_ips{%(sel)s,state="total"}) > 0
              unless
              max by (%(pool)s) (loadbalancer_pool_disabled{%(sel)s}) == 1
              unless
              max by (%(pool)s) (loadbalancer_pool_conflict{%(sel)s}) == 1
            ||| % { pool: obj(['pool']), sel: sel, threshold: c.poolAvailableIPsThreshold, available: state('loadbalancer_pool_ips{%s,state="available"}' % sel) },
            'LB IP pool {{ $labels.pool }} is exhausted.',
            'CiliumLoadBalancerIPPool {{ $labels.pool }} has {{ $value }} IPs available: new LoadBalancer Services it selects stay pending (LoadBalancerIPPending). Add a block to the pool, or free IPs held by Services nobody uses: kubectl get svc -A --field-selector spec.type=LoadBalancer.',
          ),
          alert(
            'LoadBalancerPoolConflict',
            'loadBalancerPoolConflict',
            'max by (%s) %s == 1' % [obj(['pool']), state('loadbalancer_pool_conflict{%s}' % sel)],
            'LB IP pool {{ $labels.pool }} overlaps another pool.',
            'CiliumLoadBalancerIPPool {{ $labels.pool }} has the condition cilium.io/PoolConflict: it overlaps another pool, and Cilium allocates nothing from it. Remove the overlap (kubectl get ciliumloadbalancerippools -o yaml), then check LoadBalancerIPPending.',
          ),
        ],
      },
      {
        name: 'lbprobe-self',
        rules: [
          alert(
            'LBProbeDown',
            'lbProbeDown',
            'up{%(sel)s} == 0 or absent(up{%(sel)s})' % { sel: sel },
            'lbprobe is down or not scraped.',
            'Prometheus has not scraped lbprobe {{ with $labels.instance }}{{ . }}{{ else }}(no target at all){{ end }} for %s: every other lbprobe alert is blind. Check the pod or host, the ServiceMonitor, and the NetworkPolicy that lets Prometheus in.' % c['for'].lbProbeDown,
          ),
          alert(
            'LBProbeKubernetesNotSynced',
            'lbProbeKubernetesNotSynced',
            'lbprobe_kubernetes_synced{%s} == 0' % sel,
            'lbprobe {{ $labels.instance }} has lost its view of {{ $labels.resource }}.',
            'lbprobe {{ $labels.instance }} has not been in sync with the Kubernetes API for {{ $labels.resource }} for %s: the API server does not answer its health checks, or its watch fails (RBAC: lbprobe_kubernetes_watch_errors_total and its log). It serves the last state it saw, so targets and state series may be stale.' % c['for'].lbProbeKubernetesNotSynced,
          ),
          alert(
            'LBProbeScrapeSlow',
            'lbProbeScrapeSlow',
            'lbprobe_scrape_duration_seconds{%(sel)s} / lbprobe_probe_timeout_seconds{%(sel)s} > %(ratio)g' % { sel: sel, ratio: c.scrapeSlowRatio },
            'lbprobe {{ $labels.instance }} scrapes come close to their timeout.',
            'The rounds of lbprobe {{ $labels.instance }} take {{ $value | humanizePercentage }} of the time they are allowed: probes that do not answer use up the scrape timeout, and when it is exceeded Prometheus marks lbprobe down. Look for timeouts (lbprobe_probes_total), raise scrape_timeout, or raise --probe.concurrency.',
          ),
          alert(
            'LBProbeConfigReloadFailed',
            'lbProbeConfigReloadFailed',
            'lbprobe_config_last_reload_successful{%s} == 0' % sel,
            'lbprobe {{ $labels.instance }} could not load its configuration.',
            'The last configuration reload of lbprobe {{ $labels.instance }} failed; it keeps running with the previous configuration. Its log names the key and line; lbprobe --config.check --config.file=FILE checks a file before you apply it.',
          ),
          alert(
            'LBProbeRemediationRepeating',
            'lbProbeRemediationRepeating',
            // The first action creates the series; each later one changes its value.
            'changes(lbprobe_remediation_last_action_timestamp_seconds{%s}[%s]) >= %d' % [sel, c.remediationRepeatWindow, c.remediationRepeatActions - 1],
            'lbprobe keeps acting on L2 lease {{ $labels.lease }}.',
            'Lease remediation of lbprobe {{ $labels.instance }} acted on lease %s/{{ $labels.lease }} at least %d times in %s (in dry-run: would have): deleting it does not fix the cause, which is elsewhere (a holder that keeps losing its Cilium agent, a node that flaps, a policy). Run lbprobe diagnose on its Service and look at the Events on it (reason L2LeaseDeleted).' % [ns, c.remediationRepeatActions, c.remediationRepeatWindow],
          ),
          alert(
            'LBProbeRemediationNotFixing',
            'lbProbeRemediationNotFixing',
            'increase(lbprobe_remediations_total{%s,action="verify",result="not_fixed"}[1h]) > 0' % sel,
            'A lease that lbprobe deleted did not come back healthy.',
            'After lbprobe {{ $labels.instance }} deleted an L2 lease, no Ready node took it over with an answering IP within --remediate.verify-within; lbprobe stopped acting on that lease until its Service is healthy (lbprobe_remediation_stopped names it; its Service has an Event L2LeaseRemediationNotFixing). Run lbprobe diagnose on that Service.',
          ),
        ],
      },
    ],
  },
}
