package kubecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs applies crds (server-side apply, so applying again updates) and waits until all
// are Established.
func installCRDs(ctx context.Context, cfg *rest.Config, crds []*unstructured.Unstructured) error {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubecluster: %w", err)
	}
	api := client.Resource(crdResource)
	// A few at a time: the API server spends most of the time compiling each CRD's schema.
	var wg sync.WaitGroup
	errs := make([]error, len(crds))
	sem := make(chan struct{}, 4)
	for i, crd := range crds {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := api.Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "kubecluster", Force: true})
			if err != nil {
				errs[i] = fmt.Errorf("kubecluster: applying CRD %s: %w", crd.GetName(), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := api.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("kubecluster: listing CRDs: %w", err)
		}
		established := map[string]bool{}
		for _, item := range list.Items {
			established[item.GetName()] = hasCondition(item, "Established")
		}
		var waiting []string
		for _, crd := range crds {
			if !established[crd.GetName()] {
				waiting = append(waiting, crd.GetName())
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubecluster: CRDs not Established: %s: %w", strings.Join(waiting, ", "), context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// readCRDs reads the CustomResourceDefinitions in the *.yaml, *.yml and *.json files of dirs,
// skipping documents of other kinds (e.g. the ValidatingAdmissionPolicy next to Gateway API's).
func readCRDs(dirs []string, logf func(string, ...any)) ([]*unstructured.Unstructured, error) {
	var crds []*unstructured.Unstructured
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("kubecluster: CRDs: %w", err)
		}
		n := len(crds)
		for _, e := range entries {
			if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(e.Name())) {
				continue
			}
			path := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("kubecluster: CRDs: %w", err)
			}
			dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
			for {
				var obj map[string]any
				if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return nil, fmt.Errorf("kubecluster: CRDs: %s: %w", path, err)
				}
				if obj == nil {
					continue // an empty document
				}
				u := &unstructured.Unstructured{Object: obj}
				if gvk := u.GroupVersionKind(); gvk.Group != crdResource.Group || gvk.Kind != "CustomResourceDefinition" {
					logf("kubecluster: %s: skipping %s %s", path, gvk.Kind, u.GetName())
					continue
				}
				unstructured.RemoveNestedField(u.Object, "status")
				crds = append(crds, u)
			}
		}
		if len(crds) == n {
			return nil, fmt.Errorf("kubecluster: no CustomResourceDefinition in %s", dir)
		}
	}
	return crds, nil
}

func hasCondition(u unstructured.Unstructured, condition string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == condition && m["status"] == "True" {
			return true
		}
	}
	return false
}
