package kube

import (
	"net/netip"
	"time"
)

// ServiceState is what the landing page shows of one LoadBalancer Service.
type ServiceState struct {
	Namespace string
	Name      string
	IPs       []netip.Addr // ingress IPs, sorted
	Hostnames []string     // hostname-only ingress entries
	Assigned  bool         // at least one ingress IP
	Ignored   bool         // annotated lbprobe.io/ignore: "true"
	// Policies is how many CiliumL2AnnouncementPolicies announce the
	// Service's LoadBalancer IPs; -1 when the policy CRD is not served.
	Policies int
	// Lease is the Service's cilium-l2announce lease; nil when none exists.
	Lease *LeaseState
	// PerIP is one entry per ingress IP.
	PerIP []IPState
}

// LeaseState is a Service's L2 announcement lease, evaluated when read.
// A duration is negative when the lease lacks the field it comes from.
type LeaseState struct {
	Name        string
	Holder      string
	Age         time.Duration // since spec.acquireTime
	RenewAge    time.Duration // since spec.renewTime
	Duration    time.Duration // spec.leaseDurationSeconds
	Expired     bool          // RenewAge > Duration (false when either is unknown)
	Live        bool          // a holder and not expired
	HolderReady bool          // the holder is a Node whose Ready condition is True
}

// IPState is the L2 announcement state of one ingress IP. One lease covers
// every IP of a Service, so Holder and the ages are the lease's.
type IPState struct {
	IP        netip.Addr
	Announced bool // the Service has a live lease
	// Expected: the Service is selected by at least one policy, so a live
	// lease should exist.
	Expected bool
	Holder   string
	LeaseAge time.Duration // negative when unknown or no lease
	RenewAge time.Duration // negative when unknown or no lease
	Expired  bool
}

// ServiceStates returns the state of every LoadBalancer Service, sorted by
// namespace and name, read from the caches (nil before Start).
func (d *Discovery) ServiceStates() []ServiceState {
	if !d.started.Load() {
		return nil
	}
	v := d.snapshot(true)
	var out []ServiceState
	for _, s := range v.services {
		if !isLoadBalancer(s) {
			continue
		}
		st := ServiceState{
			Namespace: s.Namespace,
			Name:      s.Name,
			IPs:       ingressIPs(s),
			Hostnames: ingressHostnames(s),
			Ignored:   annotationTrue(s, AnnotationIgnore),
			Policies:  -1,
		}
		st.Assigned = len(st.IPs) > 0
		if v.polKnown {
			st.Policies = countL2Policies(s, v.policies)
		}
		if li, ok := v.leaseOf(s); ok {
			ls := &LeaseState{Name: li.name, Holder: li.holder, Age: -1, RenewAge: -1, Duration: -1, Expired: li.expired, Live: li.live()}
			if li.hasAge {
				ls.Age = li.age
			}
			if li.hasRenewAge {
				ls.RenewAge = li.renewAge
			}
			if li.hasDuration {
				ls.Duration = li.duration
			}
			ls.HolderReady, _ = v.holderReady(li.holder)
			st.Lease = ls
		}
		for _, ip := range st.IPs {
			is := IPState{IP: ip, Expected: st.Policies > 0, LeaseAge: -1, RenewAge: -1}
			if l := st.Lease; l != nil {
				is.Announced, is.Holder, is.LeaseAge, is.RenewAge, is.Expired = l.Live, l.Holder, l.Age, l.RenewAge, l.Expired
			}
			st.PerIP = append(st.PerIP, is)
		}
		out = append(out, st)
	}
	return out
}

// Announcement is one IP's L2 announcement in words (the landing page).
type Announcement struct {
	// Announced is "yes", "NO", "NO (no L2 policy selects it)", or empty
	// when unknown (the policy CRD is not served).
	Announced string
	Holder    string
	// Lease is how long the holder has held the lease and when it last
	// renewed it ("10m0s (renewed 2s ago)", ", EXPIRED" appended).
	Lease string
	// Failing: the IP is known not to be announced.
	Failing bool
}

// Announcement describes the L2 announcement of one of the Service's IPs.
func (s ServiceState) Announcement(ip netip.Addr) Announcement {
	var st IPState
	for _, p := range s.PerIP {
		if p.IP == ip {
			st = p
		}
	}
	var a Announcement
	switch {
	case s.Policies < 0: // the policy CRD is not served: unknown
	case s.Policies == 0:
		a.Announced, a.Failing = "NO (no L2 policy selects it)", true
	case st.Announced:
		a.Announced = "yes"
	default:
		a.Announced, a.Failing = "NO", true
	}
	a.Holder = st.Holder
	if st.Holder != "" && st.LeaseAge >= 0 {
		a.Lease = st.LeaseAge.Round(time.Second).String() + " (renewed " + st.RenewAge.Round(time.Second).String() + " ago)"
		if st.Expired {
			a.Lease += ", EXPIRED"
		}
	}
	return a
}
