package sandbox

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lbprobe/lbprobe/test/seed"
)

// leaseRenewEvery is how often the sandbox renews the leases, well within
// their 15 s duration.
const leaseRenewEvery = 3 * time.Second

// SetLeaseRenewal stops (on = false) or resumes renewing the L2 lease of the
// Service svcNS/svc, as a Cilium agent that stops or resumes working: a
// lease that is not renewed expires after its duration (15 s).
func (s *Sandbox) SetLeaseRenewal(svcNS, svc string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := seed.LeaseName(svcNS, svc)
	if on {
		delete(s.notRenewed, name)
	} else {
		s.notRenewed[name] = true
	}
}

// renewLeases sets renewTime to now on every lease in the Cilium namespace
// but the ones left alone, until the sandbox stops.
func (s *Sandbox) renewLeases(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	leases := s.Seed.Core.CoordinationV1().Leases(seed.CiliumNamespace)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		list, err := leases.List(s.ctx, metav1.ListOptions{})
		if err != nil {
			if s.ctx.Err() == nil {
				s.logf("renewing leases: %v", err)
			}
			continue
		}
		for i := range list.Items {
			l := &list.Items[i]
			s.mu.Lock()
			skip := s.notRenewed[l.Name]
			s.mu.Unlock()
			if skip || l.Spec.HolderIdentity == nil {
				continue
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			if _, err := leases.Update(s.ctx, l, metav1.UpdateOptions{}); err != nil && s.ctx.Err() == nil {
				s.logf("renewing lease %s: %v", l.Name, err)
			}
		}
	}
}
