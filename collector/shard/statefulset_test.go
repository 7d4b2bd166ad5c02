package shard

// Automatic sharding against a real kube-apiserver (test/kubecluster): the
// ordinal and the StatefulSet's replicas, followed as it is scaled.

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/poll"
)

func TestMain(m *testing.M) { os.Exit(kubecluster.Shared(m, kubecluster.Options{})) }

func statefulSet(name string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "lbprobe", Image: "lbprobe/lbprobe"}}},
			},
		},
	}
}

func TestFollowStatefulSet(t *testing.T) {
	c, err := kubernetes.NewForConfig(kubecluster.Get(t).RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sets := c.AppsV1().StatefulSets("default")
	// Another StatefulSet in the namespace must not count.
	for _, s := range []*appsv1.StatefulSet{statefulSet("lbprobe", 3), statefulSet("lbprobe-other", 7)} {
		if _, err := sets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	sel := &Selector{}
	if err := FollowStatefulSet(ctx, c, "default", "lbprobe-1", sel, logger); err != nil {
		t.Fatal(err)
	}
	if got := sel.Get(); got != (Shard{1, 3}) {
		t.Fatalf("shard %v right after start, want 1/3", got)
	}
	scale := func(n int32) {
		t.Helper()
		s, err := sets.Get(ctx, "lbprobe", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Replicas = ptr.To(n)
		if _, err := sets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{4, 1, 2} {
		scale(int32(n))
		want := Shard{1, n}
		if err := poll.Until(ctx, 30*time.Second, 50*time.Millisecond, func() error {
			if got := sel.Get(); got != want {
				return fmt.Errorf("shard %v after scaling to %d, want %v", got, n, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n == 1 && sel.Get().Owns("apps/web/10.11.80.90") {
			t.Error("pod 1 of a StatefulSet scaled to 1 still owns targets")
		}
	}

	// No such StatefulSet, and a name that is not a StatefulSet pod's: an
	// error that says what is wrong, nothing served.
	for pod, want := range map[string]string{"missing-0": "statefulsets", "lbprobe": "<statefulset>-<ordinal>"} {
		err := FollowStatefulSet(ctx, c, "default", pod, &Selector{}, logger)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FollowStatefulSet(%q): %v, want an error containing %q", pod, err, want)
		}
	}
}
