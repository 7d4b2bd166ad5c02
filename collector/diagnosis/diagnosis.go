// Package diagnosis puts what lbprobe knows of a load balancer IP or a
// hostname in the order a person troubleshoots it (the seed's
// troubleshooting section), and says which step failed first, why, and the
// fix: the one place every surface (series, landing page, debug view,
// `lbprobe diagnose`) takes its verdict from.
package diagnosis

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/shard"
	"github.com/lbprobe/lbprobe/probe"
)

// State is the outcome of one step.
type State string

// The step states. Unknown is a check that did not run (this run mode
// cannot see it, or the API is not served): never ok.
const (
	OK      State = "ok"
	Failed  State = "failed"
	Unknown State = "unknown"
)

// Causes: the verdict is the cause of the first failed step, or CauseOK.
// The names are a contract (series label values, runbook anchors, the
// CLI's JSON).
const (
	CauseOK                      = "ok"
	CauseIPPending               = "ip_pending"
	CauseIPNotRequestedOne       = "ip_not_requested_one"
	CauseNoPolicy                = "no_policy"
	CausePolicyNoNode            = "policy_no_node"
	CausePolicyInterfaceMismatch = "policy_interface_mismatch"
	CauseNotAnnounced            = "not_announced"
	CauseLeaseExpired            = "lease_expired"
	CauseHolderNotReady          = "holder_not_ready"
	CauseHolderSilent            = "holder_silent"
	CauseSplitBrain              = "split_brain"
	CauseRouteViaTunnel          = "route_via_tunnel"
	CauseNoRoute                 = "no_route"
	CauseNoReadyBackends         = "no_ready_backends"
	CausePortRefused             = "port_refused"
	CauseRouteNotAccepted        = "route_not_accepted"
	CauseGatewayNotProgrammed    = "gateway_not_programmed"
	CauseDNSWrongAddress         = "dns_wrong_address"
	CauseDNSNXDomain             = "dns_nxdomain"
	CauseDNSError                = "dns_error"
	CauseTLSInvalid              = "tls_invalid"
)

// Causes lists every cause, CauseOK first, in the order of the chains.
var Causes = []string{
	CauseOK, CauseIPPending, CauseIPNotRequestedOne, CauseNoPolicy, CausePolicyNoNode, CausePolicyInterfaceMismatch,
	CauseNotAnnounced, CauseLeaseExpired, CauseHolderNotReady, CauseHolderSilent, CauseSplitBrain,
	CauseRouteViaTunnel, CauseNoRoute, CauseNoReadyBackends, CausePortRefused,
	CauseRouteNotAccepted, CauseGatewayNotProgrammed, CauseDNSWrongAddress, CauseDNSNXDomain, CauseDNSError, CauseTLSInvalid,
}

// RunbookURL is where each cause's section of docs/runbook.md is; the
// cause's anchor is appended: "#diagnosis-<cause>", the slug of its
// heading "Diagnosis: <cause>".
const RunbookURL = "https://github.com/lbprobe/lbprobe/blob/main/docs/runbook.md"

// Runbook returns the runbook link of a cause.
func Runbook(cause string) string {
	return RunbookURL + "#diagnosis-" + cause
}

// Step is one check of a chain, with what was seen.
type Step struct {
	Name     string `json:"name"`
	State    State  `json:"state"`
	Evidence string `json:"evidence,omitempty"`
	// cause and fix apply when the step failed.
	cause, fix string
}

// Diagnosis is the chain of one load balancer IP (Namespace, Service, IP)
// or one hostname, its verdict and the fix.
type Diagnosis struct {
	Target    string `json:"target"`
	Namespace string `json:"namespace,omitempty"`
	Service   string `json:"service,omitempty"`
	IP        string `json:"ip,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	// Object is what a hostname comes from ("httproute apps/public-app",
	// "service apps/legacy"); empty for a static hostname. Two objects can
	// claim one hostname, each with its own chain.
	Object  string `json:"object,omitempty"`
	Cause   string `json:"cause"`
	Fix     string `json:"fix,omitempty"`
	Runbook string `json:"runbook,omitempty"`
	Steps   []Step `json:"steps"`
	// Remediations are what lbprobe's lease remediation did about the
	// Service (its Events), oldest first; only `lbprobe diagnose` fills
	// them in.
	Remediations []Remediation `json:"remediations,omitempty"`
}

// Remediation is one thing lease remediation did, from its Event.
type Remediation struct {
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}

// OK reports whether no step failed.
func (d Diagnosis) OK() bool { return d.Cause == CauseOK }

// finish sets the verdict from the first failed step.
func (d Diagnosis) finish() Diagnosis {
	d.Cause = CauseOK
	for _, s := range d.Steps {
		if s.State == Failed {
			d.Cause, d.Fix = s.cause, s.fix
			d.Runbook = Runbook(s.cause)
			break
		}
	}
	return d
}

// Mode is what this run of lbprobe can observe.
type Mode struct {
	// ARP: ARP probes are on (--probe.arp.interface).
	ARP bool
	// CiliumNamespace holds the L2 leases (for the fixes).
	CiliumNamespace string
	// Shard is the shard this instance serves: the Services without an IP
	// that only the cluster state knows are diagnosed by their own shard
	// (the round's targets are the shard's already). The zero value owns
	// everything.
	Shard shard.Shard
}

// notObservedL2 is the evidence of an L2 step this run mode cannot see.
const notObservedL2 = "not observed: ARP probes are off here (--probe.arp.interface). In the cluster, Cilium's socket-level load balancing answers a connect to the IP in the kernel, so TCP passing says nothing of L2; the l2-daemonset or lan-host deployment sees it"

// notStarted is the evidence of a probe that never ran: this lbprobe was
// overloaded, which says nothing of the target.
const notStarted = "not probed: every probe slot was busy until the round's deadline (raise --probe.concurrency or the scrape timeout)"

func ok(name, evidence string) Step      { return Step{Name: name, State: OK, Evidence: evidence} }
func unknown(name, evidence string) Step { return Step{Name: name, State: Unknown, Evidence: evidence} }
func failed(name, evidence, cause, fix string) Step {
	return Step{Name: name, State: Failed, Evidence: evidence, cause: cause, fix: fix}
}

// The steps of a load balancer IP.
const (
	StepIPAssigned      = "IP assigned"
	StepRequestedIP     = "requested IP"
	StepPolicy          = "L2 policy selects the Service"
	StepPolicyNode      = "policy selects a node"
	StepPolicyInterface = "policy matches an interface"
	StepLease           = "lease live"
	StepAdvertised      = "L2Advertisement announces the pool"
	StepAnnouncer       = "an announcer is elected"
	StepHolderReady     = "holder Ready"
	StepARP             = "holder, and only it, answers ARP"
	StepRoute           = "route over the LAN"
	StepBackends        = "ready backends"
	StepPorts           = "ports answer"
)

// LoadBalancer diagnoses one IP of a load balancer. st is the Service's
// state in the cluster (nil for a static target); ip is the round's status
// of the IP (nil when the Service has no IP).
func LoadBalancer(lb collector.LoadBalancer, st *kube.ServiceState, ip *collector.IPStatus, mode Mode) Diagnosis {
	d := Diagnosis{Namespace: lb.Namespace, Service: lb.Service, Target: lb.Namespace + "/" + lb.Service}
	if ip != nil {
		d.IP = ip.IP.String()
		d.Target += " " + d.IP
	}
	svc := lb.Namespace + "/" + lb.Service
	leaseNS := mode.CiliumNamespace
	if leaseNS == "" {
		leaseNS = "kube-system"
	}
	if st == nil {
		d.Steps = append(d.Steps, unknown(StepIPAssigned, "a static target: no Kubernetes state"))
	} else {
		d.Steps = append(d.Steps, serviceSteps(svc, leaseNS, st, ip)...)
	}
	if ip != nil {
		arp := arpStep(svc, leaseNS, st, ip, mode)
		if arp.State == OK {
			provenByARP(d.Steps, arp)
		}
		d.Steps = append(d.Steps, arp, routeStep(ip))
	}
	if st != nil && ip != nil {
		d.Steps = append(d.Steps, backendsStep(lb, st))
	}
	if ip != nil {
		d.Steps = append(d.Steps, portsStep(svc, ip))
	}
	return d.finish()
}

// serviceSteps are the steps the cluster's objects answer: the IP, the
// request, the policies and the lease.
func serviceSteps(svc, leaseNS string, st *kube.ServiceState, ip *collector.IPStatus) []Step {
	var steps []Step
	requested := collector.JoinAddrs(st.Requested)
	ipam := ""
	if st.IPAM != "" {
		ipam = " (LB-IPAM: " + st.IPAM + ")"
	}
	if !st.Assigned || ip == nil {
		fix := fmt.Sprintf("LB-IPAM gave %s no IP%s: check the pools (`kubectl get ciliumloadbalancerippools`: exhausted, in conflict, or no serviceSelector matches the Service), then `kubectl -n %s describe service %s`", svc, ipam, st.Namespace, st.Name)
		if requested != "" {
			fix = fmt.Sprintf("%s asks for %s, which LB-IPAM did not give%s: free the IP or ask for another in the Service's lbipam.cilium.io/ips annotation, then `kubectl -n %s describe service %s`", svc, requested, ipam, st.Namespace, st.Name)
		}
		return append(steps, failed(StepIPAssigned, "no ingress IP"+ipam, CauseIPPending, fix))
	}
	steps = append(steps, ok(StepIPAssigned, collector.JoinAddrs(st.IPs)))
	var missing []string
	for _, r := range st.Requested {
		if !slices.Contains(st.IPs, r) {
			missing = append(missing, r.String())
		}
	}
	switch {
	case len(st.Requested) == 0:
		steps = append(steps, ok(StepRequestedIP, "no IP requested"))
	case len(missing) > 0:
		steps = append(steps, failed(StepRequestedIP, fmt.Sprintf("requests %s, has %s%s", requested, collector.JoinAddrs(st.IPs), ipam), CauseIPNotRequestedOne,
			fmt.Sprintf("%s has %s but asks for %s, the address clients (a router's DNS forward, firewall rules) use: free %s (`kubectl get services -A | grep %s`) and recreate the Service, or point the clients at %s", svc, collector.JoinAddrs(st.IPs), requested, strings.Join(missing, ", "), missing[0], collector.JoinAddrs(st.IPs))))
	default:
		steps = append(steps, ok(StepRequestedIP, "requests "+requested))
	}

	if a := st.Announcer; a != nil {
		switch a.Implementation {
		case kube.ImplMetalLB:
			return append(steps, metallbSteps(svc, st)...)
		case kube.ImplKubeVIP:
			return append(steps, kubeVIPSteps(svc, leaseNS, st)...)
		}
	}
	switch {
	case st.Policies < 0:
		steps = append(steps, unknown(StepPolicy, "the CiliumL2AnnouncementPolicy CRD is not served"))
		return steps
	case st.Policies == 0:
		return append(steps, failed(StepPolicy, "no CiliumL2AnnouncementPolicy selects it", CauseNoPolicy,
			fmt.Sprintf("no L2 policy selects %s: create one or fix its serviceSelector (`kubectl get ciliuml2announcementpolicies -o yaml`); a policy created after the Service may need the lease re-elected: `kubectl -n %s delete lease %s`", svc, leaseNS, kube.LeaseName(st.Namespace, st.Name))))
	}
	policies := strings.Join(st.PolicyNames, ", ")
	steps = append(steps, ok(StepPolicy, policies))
	if st.PolicyNodes == 0 {
		return append(steps, failed(StepPolicyNode, "the nodeSelector of "+policies+" matches no Node", CausePolicyNoNode,
			fmt.Sprintf("no node may announce %s: fix the nodeSelector of %s (`kubectl get nodes --show-labels`)", svc, policies)))
	}
	steps = append(steps, ok(StepPolicyNode, fmt.Sprintf("%d node(s)", st.PolicyNodes)))
	switch {
	case st.InterfaceMatch == nil:
		steps = append(steps, unknown(StepPolicyInterface, "checked only where lbprobe runs on a node the policy selects (--node.name)"))
	case !*st.InterfaceMatch:
		return append(steps, failed(StepPolicyInterface, fmt.Sprintf("%s match none of node %s's interfaces (%s)", policies, st.Node, strings.Join(st.Interfaces, ", ")), CausePolicyInterfaceMismatch,
			fmt.Sprintf("the interfaces of %s match none of %s's up interfaces (%s): fix spec.interfaces (e.g. ^%s$), then `kubectl -n %s delete lease %s`", policies, st.Node, strings.Join(st.Interfaces, ", "), first(st.Interfaces, "eth0"), leaseNS, kube.LeaseName(st.Namespace, st.Name))))
	default:
		steps = append(steps, ok(StepPolicyInterface, fmt.Sprintf("on %s (%s)", st.Node, strings.Join(st.Interfaces, ", "))))
	}

	l := st.Lease
	if l == nil {
		return append(steps, failed(StepLease, "no lease "+kube.LeaseName(st.Namespace, st.Name), CauseNotAnnounced,
			fmt.Sprintf("no node holds the lease of %s, so none answers ARP for it: check that the Cilium agents run with l2announcements enabled (`kubectl -n kube-system logs ds/cilium | grep -i l2`) and that the policy selects them", svc)))
	}
	lease := fmt.Sprintf("%s held by %s, renewed %s ago (duration %s)", l.Name, l.Holder, age(l.RenewAge), age(l.Duration))
	if l.Expired || !l.Live {
		return append(steps, failed(StepLease, lease, CauseLeaseExpired,
			fmt.Sprintf("the lease %s was last renewed %s ago by %s: `kubectl -n %s delete lease %s`, then re-check (`lbprobe diagnose %s`)", l.Name, age(l.RenewAge), l.Holder, leaseNS, l.Name, svc)))
	}
	steps = append(steps, ok(StepLease, lease))
	if !l.HolderReady {
		return append(steps, failed(StepHolderReady, l.Holder+" is not a Ready node", CauseHolderNotReady,
			fmt.Sprintf("the lease %s is held by %s, which is NotReady (or not a node): `kubectl -n %s delete lease %s` so a Ready node takes over, then re-check", l.Name, l.Holder, leaseNS, l.Name)))
	}
	return append(steps, ok(StepHolderReady, l.Holder))
}

// metallbSteps are MetalLB's: an L2Advertisement announces the pool the IP
// came from, from at least one node; one speaker announces it
// (ServiceL2Status), on a Ready node.
func metallbSteps(svc string, st *kube.ServiceState) []Step {
	var steps []Step
	m, a := st.MetalLB, st.Announcer
	switch {
	case m == nil || m.Pool == "":
		steps = append(steps, unknown(StepAdvertised, "the Service has no metallb.io/ip-allocated-from-pool annotation"))
	case len(m.Advertisements) == 0:
		return append(steps, failed(StepAdvertised, "no L2Advertisement announces pool "+m.Pool, CauseNoPolicy,
			fmt.Sprintf("no L2Advertisement announces the IPAddressPool %s that %s's IP came from, so MetalLB never announces it: create one, or add the pool to an existing one's ipAddressPools or ipAddressPoolSelectors (`kubectl get l2advertisements -A -o yaml`)", m.Pool, svc)))
	case m.AdvertisedNodes == 0:
		ads := strings.Join(m.Advertisements, ", ")
		return append(steps, failed(StepAdvertised, "the nodeSelectors of "+ads+" match no Node", CausePolicyNoNode,
			fmt.Sprintf("no node may announce %s: fix the nodeSelectors of %s (`kubectl get nodes --show-labels`)", svc, ads)))
	default:
		steps = append(steps, ok(StepAdvertised, fmt.Sprintf("%s, from %d node(s)", strings.Join(m.Advertisements, ", "), m.AdvertisedNodes)))
	}
	switch {
	case m != nil && len(m.Speakers) > 1:
		return append(steps, failed(StepAnnouncer, "ServiceL2Statuses of "+strings.Join(m.Speakers, " and "), CauseSplitBrain,
			fmt.Sprintf("the speakers on %s each announce %s: check memberlist between them (`kubectl -n metallb-system logs ds/speaker | grep -i memberlist`)", strings.Join(m.Speakers, " and "), svc)))
	case a.Node == "":
		return append(steps, failed(StepAnnouncer, "no ServiceL2Status for "+svc, CauseNotAnnounced,
			fmt.Sprintf("no MetalLB speaker announces %s, so none answers ARP for it: check that speakers run on the nodes the L2Advertisement selects (`kubectl -n metallb-system get pods -l component=speaker -o wide`) and their logs", svc)))
	}
	steps = append(steps, ok(StepAnnouncer, a.Node+" ("+a.Source+")"))
	if !a.NodeReady {
		return append(steps, failed(StepHolderReady, a.Node+" is not a Ready node", CauseHolderNotReady,
			fmt.Sprintf("the speaker on %s announces %s but %s is NotReady (or not a node): MetalLB moves the IP when that speaker leaves memberlist; restart it (`kubectl -n metallb-system delete pod -l component=speaker --field-selector spec.nodeName=%s`)", a.Node, svc, a.Node, a.Node)))
	}
	return append(steps, ok(StepHolderReady, a.Node))
}

// kubeVIPSteps are kube-vip's: a live lease (or vipHost) names the node,
// which is Ready.
func kubeVIPSteps(svc, leaseNS string, st *kube.ServiceState) []Step {
	a := st.Announcer
	switch {
	case a.Expired:
		return []Step{failed(StepAnnouncer, fmt.Sprintf("%s, last held by %s, expired", a.Lease, a.Holder), CauseLeaseExpired,
			fmt.Sprintf("kube-vip's lease %s of %s expired (held by %s): check kube-vip on %s, or `kubectl -n %s delete lease %s` so another kube-vip takes it", a.Lease, svc, a.Holder, a.Holder, leaseNS, a.Lease))}
	case a.Node == "":
		return []Step{failed(StepAnnouncer, "no kube-vip lease and no "+kubeVIPHostAnnotation, CauseNotAnnounced,
			fmt.Sprintf("no kube-vip instance took %s: check that kube-vip runs with services enabled (svc_enable) on the nodes, and its logs (`kubectl -n %s logs ds/kube-vip-ds`, in the namespace kube-vip runs in)", svc, leaseNS))}
	}
	steps := []Step{ok(StepAnnouncer, a.Node+" ("+a.Source+")")}
	if !a.NodeReady {
		return append(steps, failed(StepHolderReady, a.Node+" is not a Ready node", CauseHolderNotReady,
			fmt.Sprintf("kube-vip on %s holds %s but %s is NotReady (or not a node): %s", a.Node, svc, a.Node, takeOver(st, leaseNS))))
	}
	return append(steps, ok(StepHolderReady, a.Node))
}

// kubeVIPHostAnnotation is where kube-vip writes the node that has a VIP.
const kubeVIPHostAnnotation = "kube-vip.io/vipHost"

// holderOf is the node that should answer ARP for the Service's IPs.
func holderOf(st *kube.ServiceState) string {
	switch {
	case st == nil:
		return ""
	case st.Announcer != nil && st.Announcer.Implementation != kube.ImplCilium:
		return cmp.Or(st.Announcer.Node, st.Announcer.Holder)
	case st.Lease != nil:
		return st.Lease.Holder
	}
	return ""
}

// takeOver is how to make another node announce the Service, in the words
// of its implementation.
func takeOver(st *kube.ServiceState, leaseNS string) string {
	holder := orUnknown(holderOf(st))
	impl := kube.ImplCilium
	if st != nil && st.Announcer != nil {
		impl = st.Announcer.Implementation
	}
	switch impl {
	case kube.ImplMetalLB:
		return fmt.Sprintf("restart the MetalLB speaker on %s (`kubectl -n metallb-system delete pod -l component=speaker --field-selector spec.nodeName=%s`) so another speaker takes over", holder, holder)
	case kube.ImplKubeVIP:
		if st.Announcer.Lease == "" {
			return fmt.Sprintf("restart kube-vip on %s so that another instance takes the VIP", holder)
		}
		return fmt.Sprintf("restart kube-vip on %s, or `kubectl -n %s delete lease %s` so another node takes over", holder, leaseNS, st.Announcer.Lease)
	}
	return fmt.Sprintf("restart the Cilium agent on %s, or `kubectl -n %s delete lease %s` so another node takes over", holder, leaseNS, leaseName(st))
}

// arpStep: does the holder, and only it, answer ARP for the IP.
func arpStep(svc, leaseNS string, st *kube.ServiceState, ip *collector.IPStatus, mode Mode) Step {
	for _, p := range stPerIP(st, ip) {
		if len(p.SharedHolders) > 1 {
			return failed(StepARP, fmt.Sprintf("the IP is shared and its Services' leases are held by %s", strings.Join(p.SharedHolders, " and ")), CauseSplitBrain,
				fmt.Sprintf("%s shares %s with other Services whose leases %s hold: every holder answers ARP. Give each Service its own IP, or delete their leases in %s until one node holds them all", svc, ip.IP, strings.Join(p.SharedHolders, " and "), leaseNS))
		}
	}
	if len(ip.ARP) == 0 {
		if mode.ARP {
			return unknown(StepARP, "no ARP or NDP probe ran for this IP (no interface matched)")
		}
		return unknown(StepARP, notObservedL2)
	}
	holder := holderOf(st)
	var seen []string
	for _, a := range ip.ARP {
		switch a.Result.Reason {
		case probe.ReasonHolderIsSelf:
			return unknown(StepARP, "this node holds the IP and cannot ARP its own VIP")
		case probe.ReasonNotStarted:
			return unknown(StepARP, notStarted)
		}
		if len(a.MACs) == 0 && a.Result.Reason != probe.ReasonTimeout {
			// Only requests that went out unanswered are evidence of silence.
			return unknown(StepARP, fmt.Sprintf("the ARP probe on %s failed: %s (%v)", a.Interface, a.Result.Reason, a.Result.Err))
		}
		nodes := slices.Clone(a.Nodes)
		for i, n := range nodes {
			if n == "" {
				nodes[i] = a.MACs[i].String()
			}
		}
		switch {
		case len(a.MACs) == 0:
			return failed(StepARP, "no reply on "+a.Interface, CauseHolderSilent,
				fmt.Sprintf("nobody answers ARP for %s on %s although %s should announce it: %s", ip.IP, a.Interface, orUnknown(holder), takeOver(st, leaseNS)))
		case len(a.MACs) > 1:
			return failed(StepARP, fmt.Sprintf("%d MACs answer on %s: %s", len(a.MACs), a.Interface, strings.Join(nodes, ", ")), CauseSplitBrain,
				fmt.Sprintf("%s answer ARP for %s: find the second announcer (another lease, a duplicate address, a second L2 implementation) and stop it", strings.Join(nodes, " and "), ip.IP))
		case a.NDP != nil && len(a.NDP.Multicast) == 0:
			return failed(StepARP, fmt.Sprintf("%s answers unicast Neighbor Solicitations on %s, not multicast ones", nodes[0], a.Interface), CauseHolderSilent,
				fmt.Sprintf("%s answers only unicast solicitations for %s (cilium#41678, cilium#44311): a host that resolves it by multicast, as every new client does, gets no answer. Upgrade or restart the announcer on %s; %s", nodes[0], ip.IP, orUnknown(holder), takeOver(st, leaseNS)))
		case a.NDP != nil && len(a.NDP.UnicastAsked) > 0 && len(a.NDP.Unicast) == 0:
			return failed(StepARP, fmt.Sprintf("%s answers multicast Neighbor Solicitations on %s, not unicast ones", nodes[0], a.Interface), CauseHolderSilent,
				fmt.Sprintf("%s answers only multicast solicitations for %s (cilium#41678, cilium#44311): hosts' neighbor unreachability detection (unicast) fails and they drop the entry every few seconds. Upgrade or restart the announcer on %s; %s", nodes[0], ip.IP, orUnknown(holder), takeOver(st, leaseNS)))
		case a.HolderMatch != nil && !*a.HolderMatch:
			return failed(StepARP, fmt.Sprintf("%s answers on %s, the announcer is %s", nodes[0], a.Interface, orUnknown(holder)), CauseHolderSilent,
				fmt.Sprintf("%s should announce %s but %s answers ARP: the announcer is silent; %s", orUnknown(holder), svc, nodes[0], takeOver(st, leaseNS)))
		}
		seen = append(seen, nodes[0]+" on "+a.Interface)
	}
	return ok(StepARP, strings.Join(seen, ", "))
}

// provenByARP marks the policy interface step ok when it could not be
// checked here but the holder answers ARP: it announces on a matching
// interface.
func provenByARP(steps []Step, arp Step) {
	for i, s := range steps {
		if s.Name == StepPolicyInterface && s.State == Unknown {
			steps[i] = ok(StepPolicyInterface, "the holder answers ARP ("+arp.Evidence+")")
		}
	}
}

// routeStep: this host's route to the IP.
func routeStep(ip *collector.IPStatus) Step {
	r := ip.Route
	if r == nil {
		return unknown(StepRoute, "route check off (--probe.route.check)")
	}
	if r.Result.Reason == probe.ReasonNotStarted {
		return unknown(StepRoute, notStarted)
	}
	if r.Result.Success {
		return ok(StepRoute, "via "+r.Interface)
	}
	if r.Result.Reason == "wrong_route" {
		return failed(StepRoute, "via "+r.Interface, CauseRouteViaTunnel,
			fmt.Sprintf("this host routes %s through %s, not the LAN: remove that route (e.g. `tailscale set --accept-routes=false`, or a more specific LAN route: `ip route get %s`)", ip.IP, r.Interface, ip.IP))
	}
	return failed(StepRoute, fmt.Sprint(r.Result.Err), CauseNoRoute, fmt.Sprintf("this host has no route to %s: `ip route get %s`", ip.IP, ip.IP))
}

// backendsStep: ready endpoints behind the Service.
func backendsStep(lb collector.LoadBalancer, st *kube.ServiceState) Step {
	if st.Backends < 0 {
		return unknown(StepBackends, "EndpointSlices are not watched")
	}
	if st.Backends == 0 {
		return failed(StepBackends, "0 ready endpoints", CauseNoReadyBackends,
			fmt.Sprintf("nothing ready serves %s/%s: `kubectl -n %s get endpointslices -l kubernetes.io/service-name=%s` and the pods' readiness (for a Gateway: the Services its routes' backendRefs name)", lb.Namespace, lb.Service, lb.Namespace, lb.Service))
	}
	return ok(StepBackends, fmt.Sprintf("%d ready", st.Backends))
}

// portsStep: do the probed ports answer.
func portsStep(svc string, ip *collector.IPStatus) Step {
	if !ip.Probed {
		return unknown(StepPorts, "no port probed")
	}
	var bad, good, unprobed []string
	for _, p := range ip.Ports {
		name := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		switch {
		case p.Result.Success:
			good = append(good, name)
		case p.Result.Reason == probe.ReasonNotStarted:
			unprobed = append(unprobed, name)
		default:
			bad = append(bad, name+" "+string(p.Result.Reason))
		}
	}
	if len(bad) == 0 && len(unprobed) > 0 {
		return unknown(StepPorts, strings.Join(unprobed, ", ")+": "+notStarted)
	}
	if len(bad) > 0 || (!ip.Reachable && len(unprobed) == 0) {
		return failed(StepPorts, strings.Join(bad, ", "), CausePortRefused,
			fmt.Sprintf("%s of %s (%s) do not answer: refused means nothing listens behind it (targetPort, the Gateway listener); timeout means something drops it (a NetworkPolicy, a firewall)", strings.Join(bad, ", "), ip.IP, svc))
	}
	return ok(StepPorts, strings.Join(good, ", "))
}

// The steps of a hostname.
const (
	StepRouteAccepted     = "route accepted"
	StepGatewayProgrammed = "Gateway programmed"
	StepDNS               = "DNS answers the Gateway's address"
	StepTLS               = "TLS verifies"
)

// Hostname diagnoses one hostname; hs is what the cluster says of its
// routes (nil for a static or Service hostname).
func Hostname(h collector.HostnameStatus, hs *kube.HostnameState) Diagnosis {
	d := Diagnosis{Target: h.Hostname.Hostname, Hostname: h.Hostname.Hostname}
	if src := h.Hostname.Source; src != "" && src != "static" { // as the landing page groups them
		d.Object = h.Hostname.Source + " " + h.Hostname.Namespace + "/" + h.Hostname.Name
		d.Target += " (" + d.Object + ")"
	}
	if h.Hostname.Source != "httproute" {
		hs = nil // a Service's or the config's name: no route
	} else if hs != nil {
		// Only this route's parents: other routes may claim the name too.
		own := kube.HostnameState{Hostname: hs.Hostname}
		for _, p := range hs.Parents {
			if p.Route == h.Hostname.Namespace+"/"+h.Hostname.Name {
				own.Parents = append(own.Parents, p)
			}
		}
		hs = &own
	}
	d.Steps = append(d.Steps, routeSteps(hs)...)
	d.Steps = append(d.Steps, dnsStep(h, d.Object), tlsStep(h))
	return d.finish()
}

func routeSteps(hs *kube.HostnameState) []Step {
	if hs == nil || len(hs.Parents) == 0 {
		return []Step{unknown(StepRouteAccepted, "not a route hostname"), unknown(StepGatewayProgrammed, "not a route hostname")}
	}
	var steps []Step
	var accepted, unwritten []string
	for _, p := range hs.Parents {
		parent := p.Gateway
		if p.Section != "" {
			parent += " (" + p.Section + ")"
		}
		switch {
		case p.Accepted == nil:
			unwritten = append(unwritten, parent)
		case !*p.Accepted:
			return append(steps, failed(StepRouteAccepted, fmt.Sprintf("Gateway %s refused route %s: %s", parent, p.Route, p.AcceptedReason), CauseRouteNotAccepted,
				fmt.Sprintf("Gateway %s did not accept route %s (%s) and k8s_gateway still sends clients there: fix the route's parentRefs (sectionName, namespace, the listener's allowedRoutes): `kubectl -n %s describe httproute %s`", parent, p.Route, p.AcceptedReason, nsOf(p.Route), nameOf(p.Route))))
		default:
			accepted = append(accepted, parent)
		}
	}
	if len(accepted) == 0 {
		steps = append(steps, unknown(StepRouteAccepted, "no controller has written a status for "+strings.Join(unwritten, ", ")))
	} else {
		steps = append(steps, ok(StepRouteAccepted, "by "+strings.Join(accepted, ", ")))
	}
	var programmed []string
	for _, p := range hs.Parents {
		if p.Programmed != nil && !*p.Programmed {
			return append(steps, failed(StepGatewayProgrammed, fmt.Sprintf("Gateway %s: Programmed=False (%s)", p.Gateway, p.ProgrammedReason), CauseGatewayNotProgrammed,
				fmt.Sprintf("Gateway %s is not programmed (%s): `kubectl -n %s describe gateway %s` and the Gateway controller's log", p.Gateway, p.ProgrammedReason, nsOf(p.Gateway), nameOf(p.Gateway))))
		}
		if p.Programmed != nil && !slices.Contains(programmed, p.Gateway) {
			programmed = append(programmed, p.Gateway)
		}
	}
	if len(programmed) == 0 {
		return append(steps, unknown(StepGatewayProgrammed, "no Programmed condition"))
	}
	return append(steps, ok(StepGatewayProgrammed, strings.Join(programmed, ", ")))
}

func dnsStep(h collector.HostnameStatus, object string) Step {
	owner := "its Gateway has"
	switch {
	case h.Hostname.Source == "service":
		owner = "the " + object + " has"
	case object == "":
		owner = "the configuration expects"
	}
	if len(h.DNS) == 0 {
		return unknown(StepDNS, "no DNS server to ask")
	}
	expected := collector.JoinAddrs(h.Expect)
	var good []string
	for _, s := range h.DNS {
		r := s.Result
		if r.Reason == probe.ReasonNotStarted {
			return unknown(StepDNS, s.Server+": "+notStarted)
		}
		evidence := fmt.Sprintf("%s answered %s (%s), expected %s", s.Server, collector.JoinAddrs(r.Addresses), r.Verdict, expected)
		switch r.Verdict {
		case "correct":
			good = append(good, s.Server)
		case "nxdomain":
			return failed(StepDNS, evidence, CauseDNSNXDomain,
				fmt.Sprintf("%s does not know %s: k8s_gateway indexes the route's hostnames (its watchedResources must include HTTPRoute, and its domain must cover the name); on the router, the domain must be forwarded to k8s_gateway", s.Server, h.Hostname.Hostname))
		case "wrong_address", "missing_address", "extra_address", "route_not_accepted":
			return failed(StepDNS, evidence, CauseDNSWrongAddress,
				fmt.Sprintf("%s answers %s for %s, %s %s: check the route's parentRefs and the Gateway's status addresses (for a Service's name: another object that claims it, such as a route); a stale answer clears after the record's TTL", s.Server, orNone(collector.JoinAddrs(r.Addresses)), h.Hostname.Hostname, owner, expected))
		default:
			return failed(StepDNS, evidence+": "+fmt.Sprint(r.Err), CauseDNSError,
				fmt.Sprintf("%s did not answer for %s (%s): is k8s_gateway's LoadBalancer IP reachable and announced (`lbprobe diagnose` its IP)?", s.Server, h.Hostname.Hostname, r.Verdict))
		}
	}
	return ok(StepDNS, strings.Join(good, ", ")+" answered "+expected)
}

func tlsStep(h collector.HostnameStatus) Step {
	if len(h.TLS) == 0 {
		return unknown(StepTLS, "no TLS check")
	}
	var good []string
	for _, t := range h.TLS {
		where := fmt.Sprintf("%s:%d", t.IP, t.Port)
		if t.Result.Reason == probe.ReasonNotStarted {
			return unknown(StepTLS, where+": "+notStarted)
		}
		if !t.Result.Success {
			reason := string(t.Result.Reason)
			if t.Result.VerifyReason != "" {
				reason = string(t.Result.VerifyReason)
			}
			return failed(StepTLS, where+": "+reason, CauseTLSInvalid,
				fmt.Sprintf("the certificate served for %s on %s does not verify (%s): check the Gateway listener's certificateRefs Secret and its issuer (cert-manager: `kubectl describe certificate`)", h.Hostname.Hostname, where, reason))
		}
		good = append(good, where)
	}
	return ok(StepTLS, strings.Join(good, ", "))
}

func stPerIP(st *kube.ServiceState, ip *collector.IPStatus) []kube.IPState {
	if st == nil {
		return nil
	}
	var out []kube.IPState
	for _, p := range st.PerIP {
		if p.IP == ip.IP {
			out = append(out, p)
		}
	}
	return out
}

func leaseName(st *kube.ServiceState) string {
	if st == nil {
		return "the lease"
	}
	return kube.LeaseName(st.Namespace, st.Name)
}

func age(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return d.Round(time.Second).String()
}

func first(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func nsOf(key string) string   { ns, _, _ := strings.Cut(key, "/"); return ns }
func nameOf(key string) string { _, name, _ := strings.Cut(key, "/"); return name }
