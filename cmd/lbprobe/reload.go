package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/config"
)

// configManager loads the config file and applies it; a file that fails to
// load or to yield targets is rejected whole and the old config keeps serving.
type configManager struct {
	path         string
	flagOptions  collector.Options // what the flags set; the file's settings go over them
	engine       *collector.Engine
	static       *collector.StaticSource
	kube         *kube.Discovery // nil when Kubernetes discovery is off
	self         *selfMetrics
	logger       *slog.Logger
	mu           sync.Mutex // serialises reloads
	loaded       bool
	lastErr      error
	lastReloadAt time.Time
}

func newConfigManager(path string, flagOptions collector.Options, engine *collector.Engine, static *collector.StaticSource, self *selfMetrics, logger *slog.Logger) *configManager {
	return &configManager{path: path, flagOptions: flagOptions, engine: engine, static: static, self: self, logger: logger}
}

// Reload reads the config file and applies it when it is valid.
func (m *configManager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.apply()
	m.lastErr = err
	if err != nil {
		m.self.configReloadSuccess.Set(0)
		m.logger.Error("configuration rejected; the previous one keeps serving", "file", m.path, "err", err)
		return err
	}
	m.loaded = true
	m.lastReloadAt = time.Now()
	m.self.configReloadSuccess.Set(1)
	m.self.configReloadTime.Set(float64(m.lastReloadAt.Unix()))
	return nil
}

func (m *configManager) apply() error {
	cfg := &config.Config{}
	if m.path != "" {
		var err error
		if cfg, err = config.Load(m.path); err != nil {
			return err
		}
	}
	targets, err := collector.StaticTargets(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	opts := m.flagOptions
	if cfg.Probe.Timeout > 0 {
		opts.ProbeTimeout = cfg.Probe.Timeout
	}
	opts.DNSTransport = cfg.DNS.Transport
	var kubeSettings kube.Settings
	if m.kube != nil {
		kubeSettings = kube.Settings{DNSDomain: cfg.DNS.Domain, DNSServers: cfg.DNS.Servers}
		kubeSettings.TLS.InsecureSkipVerify = cfg.Kubernetes.TLS.InsecureSkipVerify
		if ca := cfg.Kubernetes.TLS.CAFile; ca != "" {
			pool, err := collector.LoadCAFile(ca)
			if err != nil {
				return fmt.Errorf("%s: kubernetes.tls.ca_file: %w", m.path, err)
			}
			kubeSettings.TLS.RootCAs = pool
		}
	}
	m.engine.SetOptions(opts)
	if m.kube != nil {
		m.kube.Configure(kubeSettings)
	}
	m.static.Set(targets)
	m.logger.Info("configuration loaded", "file", m.path,
		"loadbalancers", len(targets.LoadBalancers), "hostnames", len(targets.Hostnames), "probe_timeout", opts.ProbeTimeout)
	return nil
}

// configStatus is what the landing page and readiness show of the config.
type configStatus struct {
	Loaded  bool      // a config has been applied
	At      time.Time // when the last good one was applied
	LastErr error     // why the last reload failed; nil when it succeeded
}

// Status reports whether a config has been loaded and the last reload error.
func (m *configManager) Status() configStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return configStatus{Loaded: m.loaded, At: m.lastReloadAt, LastErr: m.lastErr}
}

// reloadOnSIGHUP reloads the config at every SIGHUP until ctx ends.
func (m *configManager) reloadOnSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			m.logger.Info("SIGHUP received: reloading configuration")
			_ = m.Reload() // logged by Reload
		}
	}
}
