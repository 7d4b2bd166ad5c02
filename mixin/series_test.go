package mixin_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// labelSet is a set of label names.
type labelSet map[string]bool

// inventory maps every series name lbprobe exposes (from real scrapes) to its label names.
type inventory map[string]labelSet

// targetLabels are labels Prometheus attaches to every scraped series; cluster is the mixin's
// default clusterLabel (external labels or relabelling add it).
var targetLabels = labelSet{"job": true, "instance": true, "cluster": true}

// addExposition adds the series of a text exposition to inv. Histograms and summaries add their
// _bucket/_sum/_count (and quantile) series.
func (inv inventory) addExposition(body string) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("parse exposition: %w", err)
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			ls := labelSet{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = true
			}
			switch {
			case m.Histogram != nil:
				inv.add(name+"_bucket", ls, "le")
				inv.add(name+"_sum", ls)
				inv.add(name+"_count", ls)
			case m.Summary != nil:
				inv.add(name, ls, "quantile")
				inv.add(name+"_sum", ls)
				inv.add(name+"_count", ls)
			default:
				inv.add(name, ls)
			}
		}
	}
	return nil
}

func (inv inventory) add(name string, ls labelSet, extra ...string) {
	if inv[name] == nil {
		inv[name] = labelSet{}
	}
	maps.Copy(inv[name], ls)
	for _, l := range extra {
		inv[name][l] = true
	}
}

// ruleFile is the part of a Prometheus rule file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Record string            `yaml:"record"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t testing.TB, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rf
}

// expression is one PromQL expression of the mixin and where it comes from.
type expression struct {
	where string
	expr  string
}

// grafanaVariables are replaced before parsing: ranges by a duration, the others by a value.
var (
	grafanaRange    = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)
	grafanaVariable = regexp.MustCompile(`\$\{?\w+(:\w+)?\}?`)
	labelValues     = regexp.MustCompile(`^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)
)

// substituteGrafanaWith replaces the range variables by 5m, the variables named in values by
// their value and the others by "x".
func substituteGrafanaWith(expr string, values map[string]string) string {
	return grafanaVariable.ReplaceAllStringFunc(grafanaRange.ReplaceAllString(expr, "5m"), func(v string) string {
		name := strings.Trim(v, "${}")
		name, _, _ = strings.Cut(name, ":")
		if value, ok := values[name]; ok {
			return value
		}
		return "x"
	})
}

// dashboardExpressions returns the expr of every panel target and the query of every variable
// (label_values(selector, label) gives the selector, with the label as a `by` of a count), with
// the Grafana variables replaced (see substituteGrafanaWith).
func dashboardExpressions(t testing.TB) []expression {
	return dashboardExpressionsWith(t, nil)
}

func dashboardExpressionsWith(t testing.TB, values map[string]string) []expression {
	t.Helper()
	files, err := filepath.Glob("generated/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in mixin/generated/dashboards (%v)", err)
	}
	var exprs []expression
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash any
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walkJSON(dash, f, func(where string, obj map[string]any) {
			if e, ok := obj["expr"].(string); ok && e != "" {
				exprs = append(exprs, expression{where, substituteGrafanaWith(e, values)})
			}
			if obj["type"] == "query" {
				q := obj["query"]
				if m, ok := q.(map[string]any); ok {
					q = m["query"]
				}
				s, _ := q.(string)
				if m := labelValues.FindStringSubmatch(s); m != nil {
					exprs = append(exprs, expression{where, substituteGrafanaWith(fmt.Sprintf("count by (%s) (%s)", m[2], m[1]), values)})
				} else if s != "" {
					t.Errorf("%s: variable query %q is not label_values(selector, label)", where, s)
				}
			}
		})
	}
	return exprs
}

func walkJSON(v any, where string, f func(string, map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		if title, ok := v["title"].(string); ok {
			where += " / " + title
		} else if name, ok := v["name"].(string); ok {
			where += " / " + name
		}
		f(where, v)
		for _, k := range slices.Sorted(maps.Keys(v)) {
			walkJSON(v[k], where, f)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, where, f)
		}
	}
}

// checker checks expressions against an inventory. Recording rules join the inventory as they
// are checked, with the labels their expression keeps.
type checker struct {
	inv inventory
	// used counts the selectors per series name, to show what the mixin covers.
	used map[string]int
}

// selectorName returns the series name of a vector selector.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel {
			return m.Value
		}
	}
	return ""
}

// available returns the labels the series under node can carry: the union of their labels, the
// labels label_replace and label_join write, and the target labels (an approximation that is
// exact for selections, joins and aggregations).
func (c *checker) available(node parser.Node) labelSet {
	ls := maps.Clone(targetLabels)
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			maps.Copy(ls, c.inv[selectorName(n)])
		case *parser.Call:
			if (n.Func.Name == "label_replace" || n.Func.Name == "label_join") && len(n.Args) > 1 {
				if dst, ok := n.Args[1].(*parser.StringLiteral); ok {
					ls[dst.Val] = true
				}
			}
		}
		return nil
	})
	return ls
}

// check returns the problems of one expression: parse errors, unknown series, labels in
// matchers, `by`, `without`, `on`, `ignoring` and `group_*` that the series do not have.
func (c *checker) check(e expression) []string {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(e.expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v\n%s", e.where, err, e.expr)}
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, e.where+": "+fmt.Sprintf(format, args...))
	}
	missing := func(labels []string, have labelSet) []string {
		var out []string
		for _, l := range labels {
			if !have[l] {
				out = append(out, l)
			}
		}
		return out
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			have, ok := c.inv[name]
			if !ok {
				bad("series %q is not exposed by lbprobe (nor recorded by the mixin)", name)
				return nil
			}
			c.used[name]++
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel && !have[m.Name] && !targetLabels[m.Name] {
					bad("%s has no label %q", name, m.Name)
				}
			}
		case *parser.AggregateExpr:
			if m := missing(n.Grouping, c.available(n.Expr)); len(m) > 0 {
				bad("aggregation by/without %v: no series under it has %v", n.Grouping, m)
			}
		case *parser.BinaryExpr:
			vm := n.VectorMatching
			if vm == nil {
				return nil
			}
			if vm.On || len(vm.MatchingLabels) > 0 {
				for side, node := range map[string]parser.Node{"left": n.LHS, "right": n.RHS} {
					if m := missing(vm.MatchingLabels, c.available(node)); len(m) > 0 && vm.On {
						bad("on(%v): the %s side has no %v", vm.MatchingLabels, side, m)
					}
				}
			}
			if len(vm.Include) > 0 {
				from := n.RHS
				if vm.Card == parser.CardOneToMany {
					from = n.LHS
				}
				if m := missing(vm.Include, c.available(from)); len(m) > 0 {
					bad("group_left/right(%v): the other side has no %v", vm.Include, m)
				}
			}
		}
		return nil
	})
	return problems
}

// record adds a recording rule's series to the inventory: its `by` labels when it is an
// aggregation, else the labels of the series it reads.
func (c *checker) record(name, exprText string) error {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(exprText)
	if err != nil {
		return err
	}
	ls := labelSet{}
	if agg, ok := expr.(*parser.AggregateExpr); ok && !agg.Without && len(agg.Grouping) > 0 {
		for _, l := range agg.Grouping {
			ls[l] = true
		}
	} else {
		ls = c.available(expr)
	}
	c.inv.add(name, ls)
	return nil
}

// checkMixin checks every expression of the generated rules, alerts and dashboards against inv.
func checkMixin(t *testing.T, inv inventory) {
	c := &checker{inv: inv, used: map[string]int{}}
	// ALERTS is Prometheus' own series of firing alerts; the dashboards may read it.
	c.inv.add("ALERTS", labelSet{"alertname": true, "alertstate": true, "severity": true})
	c.inv.add("up", labelSet{})
	rules := readRules(t, "generated/rules.yaml")
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, p := range c.check(expression{"rules.yaml " + r.Record, r.Expr}) {
				t.Error(p)
			}
			if err := c.record(r.Record, r.Expr); err != nil {
				t.Errorf("record %s: %v", r.Record, err)
			}
			n++
		}
	}
	alerts := readRules(t, "generated/alerts.yaml")
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			for _, p := range c.check(expression{"alerts.yaml " + r.Alert, r.Expr}) {
				t.Error(p)
			}
			n++
		}
	}
	for _, e := range dashboardExpressions(t) {
		for _, p := range c.check(e) {
			t.Error(p)
		}
		n++
	}
	t.Logf("checked %d expressions; series used: %v", n, c.used)
}
