// Everything a user may tune. Override in your own jsonnet:
//   (import 'github.com/lbprobe/lbprobe/mixin/mixin.libsonnet') + { _config+:: { lbprobeSelector: 'job="lbprobe-lan"' } }
{
  _config+:: {
    // Selects lbprobe's series (its scrape job). Every expression uses it.
    lbprobeSelector: 'job="lbprobe"',

    // The label that tells clusters apart when one Prometheus (or Thanos/Mimir) holds several;
    // aggregations keep it, and the dashboards get a cluster variable from it.
    clusterLabel: 'cluster',
    // Show the cluster variable on the dashboards (it is hidden when false).
    showMultiCluster: false,

    // Labels that tell lbprobe instances apart (e.g. an in-cluster Deployment, a DaemonSet pod per
    // node and a LAN host all probing the same IPs). Joins between lbprobe's own series match on them.
    instanceLabels: ['job', 'instance'],

    // The namespace of Cilium's L2 announcement leases (lbprobe's --cilium.namespace), used in the
    // commands that descriptions and the runbook suggest.
    ciliumNamespace: 'kube-system',

    // runbook_url of every alert: the pattern gets the lower-cased alert name (the runbook's anchor).
    runbookURLPattern: 'https://github.com/lbprobe/lbprobe/blob/main/docs/runbook.md#%s',

    // How long a condition must hold before the alert fires (Prometheus' `for`).
    'for': {
      loadBalancerUnreachable: '5m',
      loadBalancerPortUnreachable: '10m',
      loadBalancerIPPending: '10m',
      loadBalancerNotAnnounced: '5m',
      loadBalancerNoAnnouncer: '5m',
      loadBalancerNDPModeUnanswered: '5m',
      loadBalancerNoL2Policy: '15m',
      loadBalancerL2LeaseExpired: '2m',
      loadBalancerL2LeaseHolderNotReady: '5m',
      loadBalancerL2LeaseFlapping: '0m',
      loadBalancerARPNoReply: '5m',
      loadBalancerARPSplitBrain: '2m',
      loadBalancerARPHolderMismatch: '5m',
      loadBalancerRouteUnexpected: '10m',
      loadBalancerRequestedIPNotAssigned: '5m',
      loadBalancerNoReadyBackends: '5m',
      loadBalancerSharedIPSplitBrain: '2m',
      loadBalancerL2PolicyNoNodes: '10m',
      loadBalancerL2PolicyInterfaceMismatch: '10m',
      loadBalancerL2PolicyInvalid: '5m',
      gatewayDNSAnswerIncorrect: '10m',
      gatewayDNSServerDown: '5m',
      gatewayDNSHostnameConflict: '30m',
      gatewayNotProgrammed: '15m',
      gatewayAddressMismatch: '15m',
      gatewayListenerUnreachable: '5m',
      gatewayTLSCertExpiringSoon: '1h',
      gatewayTLSHandshakeFailing: '10m',
      gatewayTLSCertInvalid: '10m',
      gatewayRouteNotAccepted: '10m',
      gatewayRouteRefsUnresolved: '10m',
      gatewayListenerInvalid: '10m',
      gatewayRouteStatusStale: '15m',
      loadBalancerPoolExhausted: '15m',
      loadBalancerPoolConflict: '5m',
      lbProbeDown: '5m',
      lbProbeKubernetesNotSynced: '10m',
      lbProbeScrapeSlow: '15m',
      lbProbeConfigReloadFailed: '10m',
      lbProbeRemediationRepeating: '0m',
      lbProbeRemediationNotFixing: '0m',
    },

    // Severity of every alert: critical pages, warning goes to a ticket/chat, info only annotates.
    severity: {
      loadBalancerUnreachable: 'critical',
      loadBalancerPortUnreachable: 'warning',
      loadBalancerIPPending: 'warning',
      loadBalancerNotAnnounced: 'critical',
      loadBalancerNoAnnouncer: 'critical',
      loadBalancerNDPModeUnanswered: 'warning',
      loadBalancerNoL2Policy: 'warning',
      loadBalancerL2LeaseExpired: 'critical',
      loadBalancerL2LeaseHolderNotReady: 'critical',
      loadBalancerL2LeaseFlapping: 'warning',
      loadBalancerARPNoReply: 'critical',
      loadBalancerARPSplitBrain: 'critical',
      loadBalancerARPHolderMismatch: 'warning',
      loadBalancerRouteUnexpected: 'warning',
      loadBalancerRequestedIPNotAssigned: 'critical',
      loadBalancerNoReadyBackends: 'critical',
      loadBalancerSharedIPSplitBrain: 'critical',
      loadBalancerL2PolicyNoNodes: 'critical',
      loadBalancerL2PolicyInterfaceMismatch: 'critical',
      loadBalancerL2PolicyInvalid: 'warning',
      gatewayDNSAnswerIncorrect: 'critical',
      gatewayDNSServerDown: 'critical',
      gatewayDNSHostnameConflict: 'info',
      gatewayNotProgrammed: 'warning',
      gatewayAddressMismatch: 'warning',
      gatewayListenerUnreachable: 'critical',
      gatewayTLSCertExpiringSoon: 'warning',
      gatewayTLSHandshakeFailing: 'critical',
      gatewayTLSCertInvalid: 'warning',
      gatewayRouteNotAccepted: 'warning',
      gatewayRouteRefsUnresolved: 'warning',
      gatewayListenerInvalid: 'warning',
      gatewayRouteStatusStale: 'info',
      loadBalancerPoolExhausted: 'warning',
      loadBalancerPoolConflict: 'critical',
      lbProbeDown: 'critical',
      lbProbeKubernetesNotSynced: 'warning',
      lbProbeScrapeSlow: 'warning',
      lbProbeConfigReloadFailed: 'warning',
      lbProbeRemediationRepeating: 'warning',
      lbProbeRemediationNotFixing: 'warning',
    },

    // LBProbeRemediationRepeating: lease remediation acted on one lease this many times within the
    // window (it is not fixing the cause).
    remediationRepeatActions: 3,
    remediationRepeatWindow: '6h',

    // LoadBalancerL2LeaseFlapping: this many holder changes (spec.leaseTransitions) within the window.
    leaseFlapTransitions: 3,
    leaseFlapWindow: '1h',

    // GatewayTLSCertExpiringSoon: the leaf certificate's notAfter is less than this many days away.
    tlsCertExpiryDays: 14,

    // LoadBalancerPoolExhausted: a pool with at most this many available IPs (and at least one IP in all).
    poolAvailableIPsThreshold: 0,

    // LBProbeScrapeSlow: a round took more than this share of the time it was allowed
    // (lbprobe_probe_timeout_seconds, the scrape timeout minus --probe.timeout-offset).
    scrapeSlowRatio: 0.8,

    // Windows of the availability recording rules (<level>:<metric>:avg_over_time_<window>).
    availabilityWindows: ['5m', '1h', '1d'],

    // Dashboards.
    dashboardNamePrefix: 'lbprobe / ',
    dashboardTags: ['lbprobe'],
    dashboardRefresh: '30s',
    dashboardTimezone: 'utc',
    // uid of every dashboard; keep them stable so links and bookmarks survive upgrades.
    dashboardUIDs: {
      overview: 'lbprobe-overview',
      service: 'lbprobe-service',
      gateway: 'lbprobe-gateway',
      'self': 'lbprobe-self',
    },
  },
}
