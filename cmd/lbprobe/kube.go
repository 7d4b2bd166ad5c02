package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeConfig finds the API server's config: --kubeconfig, else in-cluster,
// else $KUBECONFIG or ~/.kube/config. With --kube.enabled=auto, finding none
// turns discovery off; with true it is an error. It returns nil, nil when
// discovery is off.
func kubeConfig(mode, path string, logger *slog.Logger) (*rest.Config, error) {
	if mode == "false" {
		return nil, nil
	}
	var (
		cfg *rest.Config
		err error
		src string
	)
	switch {
	case path != "":
		src = path
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		src = "in-cluster"
		cfg, err = rest.InClusterConfig()
	default:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		src = "default kubeconfig"
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if clientcmd.IsEmptyConfig(err) || errors.Is(err, clientcmd.ErrEmptyConfig) {
			if mode == "true" {
				return nil, errors.New("--kube.enabled=true but no Kubernetes config: set --kubeconfig, $KUBECONFIG, or run in a cluster")
			}
			logger.Info("no Kubernetes config found: Kubernetes discovery is off (static targets only)")
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes config (%s): %w", src, err)
	}
	cfg.UserAgent = "lbprobe"
	logger.Info("Kubernetes discovery on", "config", src, "server", cfg.Host)
	return cfg, nil
}

// waitForSync logs the outcome of the first sync; /-/ready follows it.
func waitForSync(ctx context.Context, sync func(context.Context) error, logger *slog.Logger) {
	if err := sync(ctx); err != nil {
		logger.Error("Kubernetes caches not synced; lbprobe stays not ready and keeps trying", "err", err)
		return
	}
	logger.Info("Kubernetes caches synced")
}
