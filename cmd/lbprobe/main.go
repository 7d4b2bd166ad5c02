// Command lbprobe is a Prometheus exporter that probes, at every scrape,
// whether each LoadBalancer IP and each Gateway hostname is reachable,
// announced and resolvable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/shard"
	"github.com/lbprobe/lbprobe/config"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// flags holds the parsed command line.
type flags struct {
	configFile           string
	configCheck          bool
	concurrency          int
	probeTimeout         time.Duration
	timeoutOffset        time.Duration
	defaultScrapeTimeout time.Duration
	arpInterface         string
	routeCheck           bool
	routeExpect          string
	nodeName             string
	kubeEnabled          string
	kubeconfig           string
	ciliumNamespace      string
	kubeSyncTimeout      time.Duration
	healthAddress        string
	web                  *web.FlagConfig
	log                  *promslog.Config

	remediate remediateFlags
	shard     shardFlags

	// command is "serve" (the exporter, the default) or "diagnose".
	command string
	// diagnose's output format and targets.
	output  string
	targets []string
}

func parseFlags(args []string, stdout, stderr io.Writer) (*flags, error) {
	app := kingpin.New("lbprobe", "Probes Kubernetes LoadBalancer IPs and Gateway hostnames at every Prometheus scrape.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	f := &flags{log: &promslog.Config{Writer: stderr}}
	app.Flag("config.file", "lbprobe configuration file (YAML). Empty: no static targets.").
		Default("").StringVar(&f.configFile)
	app.Flag("config.check", "Validate the configuration file, print the result and exit (0 valid, 1 invalid).").
		BoolVar(&f.configCheck)
	app.Flag("probe.concurrency", "How many probes may run at once; 0: from the open-file limit (half of what the HTTP connections leave, between 128 and 4096), logged at start.").
		Default("0").IntVar(&f.concurrency)
	app.Flag("probe.timeout", "Timeout of each probe (the config's probe.timeout wins when set).").
		Default("5s").DurationVar(&f.probeTimeout)
	app.Flag("probe.timeout-offset", "Subtracted from the scrape timeout (X-Prometheus-Scrape-Timeout-Seconds) to leave time to answer.").
		Default("0.5s").DurationVar(&f.timeoutOffset)
	app.Flag("probe.default-scrape-timeout", "Scrape timeout assumed when a request carries no X-Prometheus-Scrape-Timeout-Seconds header (curl, browsers).").
		Default("10s").DurationVar(&f.defaultScrapeTimeout)
	app.Flag("probe.arp.interface", "ARP-probe every load balancer IP on the interfaces matching this regular expression (unanchored, like Cilium's interfaces: use ^eth0$); empty: no ARP probes. Needs CAP_NET_RAW.").
		Default("").StringVar(&f.arpInterface)
	app.Flag("probe.route.check", "Look up the route this host uses to each load balancer IP (loadbalancer_route_info, loadbalancer_route_ok).").
		Default("true").BoolVar(&f.routeCheck)
	app.Flag("probe.route.expect-interface", "Regular expression the route's interface must match for loadbalancer_route_ok 1 (e.g. ^eth0$, so that a tailscale0 route shows); empty: any route is ok.").
		Default("").StringVar(&f.routeExpect)
	app.Flag("node.name", "The Kubernetes node lbprobe runs on (DaemonSet mode, from the downward API): ARP probes of the VIPs this node holds are skipped (a node cannot ARP its own VIP) and reported by loadbalancer_arp_skipped.").
		Default("").Envar("NODE_NAME").StringVar(&f.nodeName)
	app.Flag("kube.enabled", "Kubernetes discovery: auto (on when a Kubernetes config is found), true or false.").
		Default("auto").EnumVar(&f.kubeEnabled, "auto", "true", "false")
	app.Flag("kubeconfig", "Path of a kubeconfig (default: in-cluster config, else $KUBECONFIG or ~/.kube/config).").
		Default("").StringVar(&f.kubeconfig)
	app.Flag("cilium.namespace", "Namespace of Cilium's L2 announcement leases (the Cilium agent's namespace).").
		Default("kube-system").StringVar(&f.ciliumNamespace)
	app.Flag("kube.sync-timeout", "How long the first sync of the Kubernetes caches may take before it is logged as failing (lbprobe stays not ready and keeps trying).").
		Default("2m").DurationVar(&f.kubeSyncTimeout)
	app.Flag("web.health-listen-address", "Also serve /-/healthy and /-/ready, and only these, on this address, in plain HTTP without the --web.config.file TLS and basic auth: for kubelet probes when basic auth is on. Empty: off.").
		Default("").StringVar(&f.healthAddress)
	f.remediate.add(app)
	f.shard.add(app)
	f.web = kingpinflag.AddFlags(app, ":9884")
	promslogflag.AddFlags(app, f.log)
	app.Version(version.Print("lbprobe"))
	app.HelpFlag.Short('h')
	app.Command("serve", "Run the exporter (the default).").Default()
	diagnose := app.Command("diagnose", "Probe the targets once and print, for each, the diagnosis chain (✓ ok, ✗ failed, ? not observed here), the verdict and the fix. Exit 0 when healthy, 1 when a step failed, 2 on a usage or connection error or an unknown target.")
	diagnose.Flag("output", "Output format: text or json (one object per target).").
		Short('o').Default("text").EnumVar(&f.output, "text", "json")
	diagnose.Arg("target", "namespace/service, a load balancer IP or a hostname; none: every failing target.").
		StringsVar(&f.targets)
	command, err := app.Parse(args)
	if err != nil {
		return nil, err
	}
	f.command = command
	switch {
	case f.concurrency < 0:
		return nil, fmt.Errorf("--probe.concurrency must be 0 (from the open-file limit) or positive, got %d", f.concurrency)
	case f.probeTimeout <= 0:
		return nil, fmt.Errorf("--probe.timeout must be positive, got %s", f.probeTimeout)
	case f.timeoutOffset < 0:
		return nil, fmt.Errorf("--probe.timeout-offset must not be negative, got %s", f.timeoutOffset)
	case !validRegexp(f.arpInterface):
		return nil, fmt.Errorf("--probe.arp.interface: %q is not a valid regular expression", f.arpInterface)
	case !validRegexp(f.routeExpect):
		return nil, fmt.Errorf("--probe.route.expect-interface: %q is not a valid regular expression", f.routeExpect)
	case f.defaultScrapeTimeout <= f.timeoutOffset:
		return nil, fmt.Errorf("--probe.default-scrape-timeout (%s) must exceed --probe.timeout-offset (%s)", f.defaultScrapeTimeout, f.timeoutOffset)
	case f.remediate.mode != "off" && f.kubeEnabled == "false":
		return nil, fmt.Errorf("--remediate.leases=%s needs Kubernetes discovery, but --kube.enabled=false", f.remediate.mode)
	}
	if err := f.remediate.validate(); err != nil {
		return nil, err
	}
	if err := f.shard.validate(); err != nil {
		return nil, err
	}
	if f.shard.auto() && f.kubeEnabled == "false" {
		return nil, fmt.Errorf("--pod (automatic sharding) needs Kubernetes discovery, but --kube.enabled=false")
	}
	return f, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "lbprobe: %v\n", err)
		return 2
	}
	if f.configCheck {
		return checkConfig(f.configFile, stdout, stderr)
	}
	if f.command == "diagnose" {
		return runDiagnose(args, f, stdout, stderr)
	}
	logger := promslog.New(f.log)
	logger.Info("starting lbprobe", "version", version.Info(), "build_context", version.BuildContext())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, f, logger); err != nil {
		logger.Error("lbprobe stopped", "err", err)
		return 1
	}
	return 0
}

// checkConfig validates the config file and the targets it yields.
func checkConfig(path string, stdout, stderr io.Writer) int {
	if path == "" {
		fmt.Fprintln(stderr, "lbprobe: --config.check needs --config.file")
		return 1
	}
	cfg, err := config.Load(path)
	if err == nil {
		_, err = collector.StaticTargets(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d load balancers, %d hostnames)\n", path, len(cfg.Static.LoadBalancers), len(cfg.Static.Hostnames))
	return 0
}

func validRegexp(s string) bool {
	_, err := regexp.Compile(s)
	return err == nil
}

// optionalRegexp compiles a validated pattern; empty gives nil.
func optionalRegexp(s string) *regexp.Regexp {
	if s == "" {
		return nil
	}
	return regexp.MustCompile(s)
}

// prober is what the exporter and `lbprobe diagnose` share: the engine
// over the config's static targets and, when on, Kubernetes discovery
// (started, not necessarily synced).
type prober struct {
	engine  *collector.Engine
	disc    *kube.Discovery // nil when Kubernetes discovery is off
	restCfg *rest.Config    // nil when Kubernetes discovery is off
	configs *configManager
	self    *selfMetrics
	shard   *shard.Selector
	// afterRound are called with every finished shared round; add to it
	// before the first round.
	afterRound []func(*collector.RoundResult)
}

// newProber loads the configuration, builds the engine and starts
// discovery as the flags say.
func newProber(ctx context.Context, f *flags, logger *slog.Logger) (*prober, error) {
	static := &collector.StaticSource{}
	sources := []collector.Source{static}
	p := &prober{self: newSelfMetrics()}

	restCfg, err := kubeConfig(f.kubeEnabled, f.kubeconfig, logger)
	if err != nil {
		return nil, err
	}
	p.restCfg = restCfg
	if restCfg != nil {
		// client-go logs (leader election, watch errors) in lbprobe's format.
		klog.SetSlogLogger(logger.With("component", "client-go"))
	}
	if p.shard, err = f.shard.selector(ctx, restCfg, logger.With("component", "shard")); err != nil {
		return nil, err
	}
	p.self.registry.MustRegister(shardInfo(p.shard))
	if restCfg != nil {
		p.disc, err = kube.New(restCfg, kube.Options{CiliumNamespace: f.ciliumNamespace, SyncTimeout: f.kubeSyncTimeout, NodeName: f.nodeName}, logger)
		if err != nil {
			return nil, fmt.Errorf("kubernetes discovery: %w", err)
		}
		sources = append(sources, p.disc)
		// Every shard syncs the whole caches and exposes its own targets'
		// state series.
		p.self.registry.MustRegister(shard.Collector(p.disc, p.shard))
	}

	// The round options the flags set; each config reload applies the
	// file's settings over them, in one swap.
	flagOptions := collector.Options{
		ProbeTimeout:  f.probeTimeout,
		ARPInterfaces: optionalRegexp(f.arpInterface),
		RouteCheck:    f.routeCheck,
		RouteExpect:   optionalRegexp(f.routeExpect),
		NodeName:      f.nodeName,
	}
	p.engine = collector.NewEngine(collector.Config{
		Concurrency: probeConcurrency(f.concurrency, logger),
		Logger:      logger.With("component", "engine"),
		Options:     flagOptions,
		Shard:       p.shard,
	}, sources...)
	p.afterRound = append(p.afterRound, p.self.observeRound)
	p.engine.OnRoundDone(func(r *collector.RoundResult) {
		for _, f := range p.afterRound {
			f(r)
		}
	})

	p.configs = newConfigManager(f.configFile, flagOptions, p.engine, static, p.self, logger.With("component", "config"))
	p.configs.kube = p.disc
	if err := p.configs.Reload(); err != nil {
		return nil, fmt.Errorf("loading configuration: %w", err)
	}
	if p.disc != nil {
		if err := p.disc.Start(ctx); err != nil {
			return nil, fmt.Errorf("starting Kubernetes discovery: %w", err)
		}
	}
	return p, nil
}

// serve runs the exporter until ctx ends.
func serve(ctx context.Context, f *flags, logger *slog.Logger) error {
	p, err := newProber(ctx, f, logger)
	if err != nil {
		return err
	}
	engine, disc, configs, self := p.engine, p.disc, p.configs, p.self
	remediator, err := startRemediation(ctx, f, p, logger.With("component", "remediate"))
	if err != nil {
		return err
	}
	go configs.reloadOnSIGHUP(ctx)
	if disc != nil {
		go waitForSync(ctx, disc.WaitForSync, logger.With("component", "kube"))
	}

	srv := &server{
		kube:                 disc,
		engine:               engine,
		configs:              configs,
		self:                 self,
		logger:               logger.With("component", "web"),
		timeoutOffset:        f.timeoutOffset,
		defaultScrapeTimeout: f.defaultScrapeTimeout,
		debugSlots:           make(chan struct{}, maxDebugRequests),
		ciliumNamespace:      f.ciliumNamespace,
		remediator:           remediator,
	}
	guard := newConnGuard(maxConns(), logger.With("component", "web"))
	httpServer := &http.Server{
		Handler:           srv.routes(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		// A backstop: /metrics, /probe and / set their own write deadline
		// from their round's budget.
		WriteTimeout: f.defaultScrapeTimeout + writeGrace,
		ConnState:    guard.track,
	}
	logFDLimit(logger, guard.max)
	errc := make(chan error, 2)
	go func() { errc <- listenAndServe(httpServer, f.web, logger) }()
	var healthServer *http.Server
	if f.healthAddress != "" {
		healthServer = &http.Server{
			Handler:           srv.healthHandler(),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			WriteTimeout:      writeGrace,
			ConnState:         newConnGuard(16, logger.With("component", "web")).track,
		}
		go func() { errc <- listenHealth(healthServer, f.healthAddress, logger) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if healthServer != nil {
		_ = healthServer.Shutdown(shutdownCtx)
	}
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down the web server: %w", err)
	}
	return nil
}

// listenHealth serves /-/healthy and /-/ready on addr, plain HTTP without
// the web config's TLS and basic auth, for kubelet probes.
func listenHealth(server *http.Server, addr string, logger *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--web.health-listen-address %s: %w", addr, err)
	}
	logger.Info("listening for health checks", "address", l.Addr().String())
	if err := server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// logFDLimit logs the open-file limit: the Go runtime raises the soft
// limit to the hard one at start, and the web server serves at most
// maxConns connections (half of it, when it is low).
// probeConcurrency resolves --probe.concurrency (0: from the open-file
// limit) and logs it.
func probeConcurrency(flag int, logger *slog.Logger) int {
	if flag > 0 {
		return flag
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("reading the open-file limit: probe concurrency 128", "err", err)
		return 128
	}
	n := collector.AutoConcurrency(lim.Cur, maxConns())
	logger.Info("probe concurrency from the open-file limit (--probe.concurrency=0)", "concurrency", n, "open_file_limit", lim.Cur)
	return n
}

func logFDLimit(logger *slog.Logger, maxConns int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("reading the open-file limit", "err", err)
		return
	}
	logger.Info("open-file limit", "soft", lim.Cur, "hard", lim.Max, "max_connections", maxConns)
}

// listenAndServe opens the TCP listeners itself so that it can log the
// address really bound (":0" in tests), then serves through exporter-toolkit
// (TLS and basic auth from --web.config.file). Systemd sockets and vsock
// addresses are left to exporter-toolkit.
func listenAndServe(server *http.Server, wf *web.FlagConfig, logger *slog.Logger) error {
	if wf.WebSystemdSocket != nil && *wf.WebSystemdSocket {
		return web.ListenAndServe(server, wf, logger)
	}
	var listeners []net.Listener
	for _, addr := range *wf.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			return web.ListenAndServe(server, wf, logger)
		}
	}
	for _, addr := range *wf.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range listeners {
				o.Close()
			}
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		logger.Info("listening", "address", l.Addr().String())
		listeners = append(listeners, l)
	}
	err := web.ServeMultiple(listeners, server, wf, logger)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
