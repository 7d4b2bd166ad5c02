package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The strict walk visits values with aliases expanded. Its budget grows with
// the size of the document, so that only aliases can exhaust it: a document
// that makes them expand to millions of values (a "billion laughs") fails
// quickly instead of being walked, decoded and probed.
const (
	budgetBase    = 1 << 16
	budgetPerByte = 4
)

var (
	configType   = reflect.TypeFor[Config]()
	addrType     = reflect.TypeFor[netip.Addr]()
	durationType = reflect.TypeFor[time.Duration]()
)

// checker walks a YAML node tree alongside a Go type. It records the line of
// every key and list item by field path (static.loadbalancers[0].ips[1]) for
// Validate, and collects every problem that would stop or silently bend the
// decoding: unknown and duplicate keys, wrong kinds, scalars that do not fit.
// Whatever it accepts, yaml.v3 decodes without error.
type checker struct {
	errs   []error
	lines  map[string]int
	budget int
	// fields caches fieldsOf.
	fields map[reflect.Type][]field
	// expanding holds the anchored nodes being walked through an alias, to
	// stop at an alias inside its own anchor.
	expanding map[*yaml.Node]bool
}

// newChecker returns a checker for a document of size bytes.
func newChecker(size int) *checker {
	return &checker{
		lines:     make(map[string]int),
		budget:    budgetBase + budgetPerByte*size,
		fields:    make(map[reflect.Type][]field),
		expanding: make(map[*yaml.Node]bool),
	}
}

// addf records a problem with a field's value.
func (c *checker) addf(path string, n *yaml.Node, format string, args ...any) {
	line := n.Line
	if l, ok := c.lines[path]; ok {
		line = l
	}
	c.errs = append(c.errs, &fieldError{path: path, line: line, msg: fmt.Sprintf(format, args...)})
}

// keyErrorf records a problem with a key: these lead with the line, since the
// path they would name does not exist.
func (c *checker) keyErrorf(line int, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...)))
}

// spend counts one visited node against the budget. When the budget runs
// out it records the error once and reports false from then on.
func (c *checker) spend(n *yaml.Node) bool {
	switch {
	case c.budget > 1:
		c.budget--
		return true
	case c.budget == 1:
		c.budget = 0
		c.keyErrorf(n.Line, "aliases expand to too many values")
	}
	return false
}

// visit checks node n against type t at path. item is true for list items,
// where null is not an empty value but a mistake.
func (c *checker) visit(n *yaml.Node, t reflect.Type, path string, item bool) {
	if !c.spend(n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil {
			c.addf(path, n, "alias *%s has no anchor", n.Value)
			return
		}
		if c.expanding[target] {
			c.addf(path, n, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		c.expanding[target] = true
		defer delete(c.expanding, target)
		c.visit(target, t, path, item)
		return
	}

	if item && isNull(n) {
		// yaml.v3 would drop the item, shifting the indices after it.
		c.addf(path, n, "expected %s, got null", expected(t))
		return
	}
	switch {
	case t == addrType:
		c.addr(n, path)
	case t == durationType:
		c.duration(n, path)
	case t.Kind() == reflect.Pointer:
		if isNull(n) {
			c.addf(path, n, "empty value: remove the key, or write {} for the defaults")
			return
		}
		c.visit(n, t.Elem(), path, item)
	case t.Kind() == reflect.Struct:
		c.mapping(n, t, path)
	case t.Kind() == reflect.Slice:
		c.sequence(n, t, path)
	case t.Kind() == reflect.Uint16:
		c.port(n, path)
	case t.Kind() == reflect.String:
		var s string
		if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
			c.addf(path, n, "expected a string, got %s", describe(n))
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			c.addf(path, n, "expected true or false, got %s", describe(n))
		}
	default:
		// A field type this walk does not know yet: a bug here, not in the file.
		c.addf(path, n, "internal error: no check for Go type %s", t)
	}
}

// field is one YAML key of a struct.
type field struct {
	name string
	typ  reflect.Type
}

// fieldsOf lists the YAML keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fs = append(fs, field{name: name, typ: f.Type})
	}
	return fs
}

// mapping checks a mapping against struct type t.
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.addf(path, n, "expected a mapping, got %s", describe(n))
		return
	}
	if tag := n.ShortTag(); tag != "!!map" {
		c.addf(path, n, "unexpected tag %s on a mapping", truncate(tag))
		return
	}
	fields, ok := c.fields[t]
	if !ok {
		fields = fieldsOf(t)
		c.fields[t] = fields
	}
	c.keys(n, fields, path, make(map[string]bool))
}

// keys checks the keys of mapping n, then the mappings it merges ("<<").
// done holds the keys already set by the mapping that merges n, which take
// precedence, as in yaml.v3.
func (c *checker) keys(n *yaml.Node, fields []field, path string, done map[string]bool) {
	where := where(path)
	seen := make(map[string]int, len(n.Content)/2)
	var merge *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" && !isMerge(k) {
			c.keyErrorf(k.Line, "a key %s is %s, not a string", where, describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.keyErrorf(k.Line, "duplicate key %q %s (first at line %d)", truncate(k.Value), where, first)
			continue
		}
		seen[k.Value] = k.Line
		if isMerge(k) {
			merge = v
			continue
		}
		if done[k.Value] {
			continue
		}
		done[k.Value] = true
		fi := slices.IndexFunc(fields, func(f field) bool { return f.name == k.Value })
		if fi < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			c.keyErrorf(k.Line, "unknown key %q %s (known: %s)", truncate(k.Value), where, strings.Join(names, ", "))
			continue
		}
		p := joinPath(path, k.Value)
		c.lines[p] = k.Line
		c.visit(v, fields[fi].typ, p, false)
	}
	if merge != nil {
		c.merge(merge, fields, path, done)
	}
}

// merge checks the value of a merge key: a mapping, an alias of one, or a
// list of those (yaml.v3 accepts nothing else).
func (c *checker) merge(v *yaml.Node, fields []field, path string, done map[string]bool) {
	bad := func(n *yaml.Node) {
		c.keyErrorf(n.Line, "merge key << %s needs a mapping or a list of mappings, got %s", where(path), describe(n))
	}
	switch v.Kind {
	case yaml.MappingNode, yaml.AliasNode:
		c.merged(v, fields, path, done, bad)
	case yaml.SequenceNode:
		for _, it := range v.Content {
			c.merged(it, fields, path, done, bad)
		}
	default:
		bad(v)
	}
}

// merged checks one mapping (or alias of one) that a merge key names.
func (c *checker) merged(n *yaml.Node, fields []field, path string, done map[string]bool, bad func(*yaml.Node)) {
	if !c.spend(n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil || target.Kind != yaml.MappingNode {
			bad(n)
			return
		}
		if c.expanding[target] {
			c.keyErrorf(n.Line, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		c.expanding[target] = true
		defer delete(c.expanding, target)
		n = target
	}
	if n.Kind != yaml.MappingNode {
		bad(n)
		return
	}
	c.keys(n, fields, path, done)
}

// sequence checks a list against slice type t.
func (c *checker) sequence(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		c.addf(path, n, "expected a list, got %s", describe(n))
		return
	}
	if tag := n.ShortTag(); tag != "!!seq" {
		c.addf(path, n, "unexpected tag %s on a list", truncate(tag))
		return
	}
	for i, it := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		c.lines[p] = it.Line
		c.visit(it, t.Elem(), p, true)
	}
}

// port checks a port number. 0 passes here; Validate rejects it.
func (c *checker) port(n *yaml.Node, path string) {
	if isNull(n) {
		return
	}
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		c.addf(path, n, "expected a port number, got %s", describe(n))
		return
	}
	if v < 0 || v > 65535 {
		c.addf(path, n, "%s is out of range 1-65535", n.Value)
	}
}

// addr checks an IP address.
func (c *checker) addr(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		c.addf(path, n, "expected an IP address, got %s", describe(n))
		return
	}
	if _, err := netip.ParseAddr(n.Value); err != nil {
		c.addf(path, n, "%q is not an IP address", n.Value)
	}
}

// duration checks a duration.
func (c *checker) duration(n *yaml.Node, path string) {
	var d time.Duration
	if n.Kind != yaml.ScalarNode || n.Decode(&d) != nil {
		c.addf(path, n, "expected a duration like 2s or 500ms, got %s", describe(n))
	}
}

// expected names what a value of type t is, for "expected ..., got ...".
func expected(t reflect.Type) string {
	switch {
	case t == addrType:
		return "an IP address"
	case t == durationType:
		return "a duration"
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Pointer:
		return "a mapping"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Uint16:
		return "a port number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	default:
		return "a string"
	}
}

// isNull reports whether n is a null scalar (absent value, ~ or null).
func isNull(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!null" {
		return false
	}
	// A null tag on a value that is not null ("!!null x") fails to decode.
	var v any
	return n.Decode(&v) == nil
}

// isMerge reports whether key k is the merge key, as yaml.v3 decides it.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

// describe names a node's kind and value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "alias *" + truncate(n.Value)
	case yaml.DocumentNode:
		return "a document"
	}
	v := truncate(n.Value)
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "null"
	case "!!str":
		return fmt.Sprintf("string %q", v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	default:
		return fmt.Sprintf("%s %q", truncate(tag), v)
	}
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "…"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where places a key for a message: "in static.loadbalancers[0]".
func where(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "in " + path
}
