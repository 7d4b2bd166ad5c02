// Command sandbox is `make run`: a local copy of the reference cluster that
// lbprobe watches and probes, all on this machine's loopback.
//
// It starts a real etcd and kube-apiserver (built from the Go module proxy
// on first use), installs the Gateway API and Cilium CRDs, writes the
// reference objects (test/seed) with loopback stand-ins 127.11.80.x for the
// LoadBalancer IPs 10.11.80.x, serves their ports, runs the real k8s_gateway
// for the zone sbbh.cloud, and finally runs bin/lbprobe against all of it.
// A few things are broken on purpose so that every series shows both
// states: the Service apps/pending has no IP, the lease of network/k8s-gateway
// is stale, apps/legacy claims a hostname that a route owns (k8s_gateway
// answers the route's address) and nothing serves its port.
//
// Ctrl-C stops everything and removes the temporary files.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lbprobe/lbprobe/test/k8sgateway"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/seed"
	"github.com/lbprobe/lbprobe/test/targets"
)

func main() {
	lbprobe := flag.String("lbprobe", "bin/lbprobe", "the lbprobe binary to run")
	listen := flag.String("listen", "127.0.0.1:9884", "lbprobe's listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *lbprobe, *listen, flag.Args()); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sandbox: "+format+"\n", args...)
}

func run(ctx context.Context, lbprobe, listen string, extraArgs []string) error {
	dir, err := os.MkdirTemp("", "lbprobe-sandbox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	logf("starting etcd and kube-apiserver (the first run builds them from the Go module proxy: several minutes)")
	crds, err := kubecluster.CRDDirs()
	if err != nil {
		return err
	}
	cluster, err := kubecluster.Start(ctx, kubecluster.Options{CRDDirs: crds, Logf: logf})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	logf("API server %s, kubeconfig %s", cluster.Server(), cluster.KubeconfigPath())
	if err := k8sgateway.MakeCRDsCompatible(ctx, cluster.RESTConfig()); err != nil {
		return err
	}

	ports := seed.ReferencePorts()
	if os.Geteuid() != 0 {
		ports = seed.Ports{HTTP: 8080, HTTPS: 8443, DNS: 5353}
		logf("not root: the Services use ports %d, %d and %d instead of 80, 443 and 53", ports.HTTP, ports.HTTPS, ports.DNS)
	}
	addrs := seed.Loopback(11)
	cl, err := seed.New(cluster.RESTConfig(), addrs)
	if err != nil {
		return err
	}
	if err := cl.Seed(ctx, ports); err != nil {
		return err
	}
	if err := breakMore(ctx, cl); err != nil {
		return err
	}
	logf("seeded: Gateways external %s and internal %s, k8s-gateway %s, apps/legacy %s, apps/pending (no IP)",
		addrs.External, addrs.Internal, addrs.DNS, addrs.Legacy)

	caFile, err := servePorts(ctx, dir, addrs, ports)
	if err != nil {
		return err
	}
	logf("starting k8s_gateway on %s:%d (the first run builds it: a minute or two)", addrs.DNS, ports.DNS)
	dns, err := k8sgateway.Start(ctx, k8sgateway.Options{
		Zone: seed.Domain, Kubeconfig: cluster.KubeconfigPath(),
		Listen: netip.AddrPortFrom(addrs.DNS, uint16(ports.DNS)), Dir: dir,
	})
	if err != nil {
		return err
	}
	defer dns.Stop()

	config := filepath.Join(dir, "lbprobe.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`# written by hack/sandbox
dns:
  domain: %s
kubernetes:
  tls:
    ca_file: %s
`, seed.Domain, caFile)), 0o644); err != nil {
		return err
	}
	args := append([]string{
		"--config.file=" + config, "--kubeconfig=" + cluster.KubeconfigPath(),
		"--cilium.namespace=" + seed.CiliumNamespace, "--web.listen-address=" + listen,
	}, extraArgs...)
	logf("running %s %v", lbprobe, args)
	logf("ready in a few seconds: http://%s/  —  curl -s http://%s/metrics | grep -E '^(loadbalancer|gateway)_'", listen, listen)
	cmd := exec.CommandContext(ctx, lbprobe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	if ctx.Err() != nil {
		logf("stopping")
		return nil
	}
	return err
}

// breakMore adds the sandbox's other broken things, so that those series
// show their failing value too: a second pool that overlaps the first, a
// Gateway "staging" that is not programmed and whose status address differs
// from the one it asked for (nothing serves it), and a hostname claimed by
// routes on both Gateways.
func breakMore(ctx context.Context, cl *seed.Cluster) error {
	if err := cl.Pool(ctx, "lb-pool-old", netip.MustParsePrefix("127.11.80.80/29"), 0); err != nil {
		return err
	}
	if err := cl.SetPoolConflict(ctx, "lb-pool-old", true); err != nil {
		return err
	}
	if err := cl.Gateway(ctx, seed.GatewayNS, "staging", netip.MustParseAddr("127.11.80.85")); err != nil {
		return err
	}
	gws := cl.Dynamic.Resource(seed.GatewayGVR).Namespace(seed.GatewayNS)
	patch := []byte(`{"spec":{"addresses":[{"type":"IPAddress","value":"127.11.80.84"}]}}`)
	if _, err := gws.Patch(ctx, "staging", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("gateway staging: %w", err)
	}
	if err := cl.SetGatewayAddress(ctx, seed.GatewayNS, "staging", netip.MustParseAddr("127.11.80.85"), false); err != nil {
		return err
	}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "shared-app", "namespace": seed.AppsNS},
		"spec": map[string]any{
			"hostnames": []any{"shared." + seed.Domain},
			"parentRefs": []any{
				map[string]any{"name": "external", "namespace": seed.GatewayNS},
				map[string]any{"name": "internal", "namespace": seed.GatewayNS},
			},
		},
	}}
	if _, err := cl.Dynamic.Resource(seed.HTTPRouteGVR).Namespace(seed.AppsNS).Create(ctx, route, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("httproute shared-app: %w", err)
	}
	return nil
}

// servePorts serves HTTP (plain TCP accept) and HTTPS (TLS with a
// certificate for *.sbbh.cloud from a sandbox CA, written to dir) on the
// Gateways' addresses. Nothing serves apps/legacy. It returns the CA file.
func servePorts(ctx context.Context, dir string, addrs seed.Addresses, ports seed.Ports) (string, error) {
	now := time.Now()
	cert, err := targets.NewCertificate([]string{"*." + seed.Domain, seed.Domain}, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	if err != nil {
		return "", err
	}
	caFile := filepath.Join(dir, "sandbox-ca.pem")
	if err := os.WriteFile(caFile, cert.CAPEM, 0o644); err != nil {
		return "", err
	}
	for _, ip := range []netip.Addr{addrs.External, addrs.Internal} {
		if _, err := targets.TCP(ctx, netip.AddrPortFrom(ip, uint16(ports.HTTP)).String()); err != nil {
			return "", err
		}
		if _, err := targets.TLS(ctx, netip.AddrPortFrom(ip, uint16(ports.HTTPS)).String(), tls.Certificate(cert.Leaf)); err != nil {
			return "", err
		}
	}
	return caFile, nil
}
