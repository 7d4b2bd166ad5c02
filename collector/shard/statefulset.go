package shard

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Ordinal splits a StatefulSet pod's name into the StatefulSet's name and
// the pod's ordinal (web-2: web, 2).
func Ordinal(pod string) (statefulSet string, ordinal int, err error) {
	i := strings.LastIndexByte(pod, '-')
	if i <= 0 {
		return "", 0, fmt.Errorf("--pod %q is not a StatefulSet pod's name (<statefulset>-<ordinal>)", pod)
	}
	n, err := strconv.Atoi(pod[i+1:])
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("--pod %q is not a StatefulSet pod's name (<statefulset>-<ordinal>): %q is not an ordinal", pod, pod[i+1:])
	}
	return pod[:i], n, nil
}

// replicas is a StatefulSet's spec.replicas (1 when unset, as the API
// server defaults it).
func replicas(sts *appsv1.StatefulSet) int {
	if sts.Spec.Replicas == nil {
		return 1
	}
	return int(*sts.Spec.Replicas)
}

// FollowStatefulSet is the automatic mode: the shard is the ordinal of the
// pod, the total its StatefulSet's spec.replicas. It reads the StatefulSet
// once (an error when it cannot: the pod should not serve a shard it does
// not know), sets sel, then watches the StatefulSet until ctx ends, so
// that scaling it re-shards at once. A pod whose ordinal is past the new
// replicas (being scaled away) owns nothing.
func FollowStatefulSet(ctx context.Context, client kubernetes.Interface, namespace, pod string, sel *Selector, logger *slog.Logger) error {
	name, ordinal, err := Ordinal(pod)
	if err != nil {
		return err
	}
	sts, err := client.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("automatic sharding: reading StatefulSet %s/%s of pod %s (needs get, list and watch on statefulsets): %w", namespace, name, pod, err)
	}
	set := func(sts *appsv1.StatefulSet) {
		s := Shard{Index: ordinal, Total: replicas(sts)}
		if old := sel.Get(); old == s {
			return
		}
		sel.Set(s)
		if ordinal >= s.Total {
			logger.Warn("automatic sharding: this pod's ordinal is past the StatefulSet's replicas; it owns no target", "statefulset", namespace+"/"+name, "shard", ordinal, "total_shards", s.Total)
			return
		}
		logger.Info("automatic sharding", "statefulset", namespace+"/"+name, "shard", ordinal, "total_shards", s.Total)
	}
	set(sts)

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := factory.Apps().V1().StatefulSets().Informer()
	_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onStatefulSet(obj, set) },
		UpdateFunc: func(_, obj any) { onStatefulSet(obj, set) },
	})
	if err != nil {
		return fmt.Errorf("automatic sharding: watching StatefulSet %s/%s: %w", namespace, name, err)
	}
	factory.Start(ctx.Done())
	go func() { <-ctx.Done(); factory.Shutdown() }()
	return nil
}

func onStatefulSet(obj any, set func(*appsv1.StatefulSet)) {
	if sts, ok := obj.(*appsv1.StatefulSet); ok {
		set(sts)
	}
}
