package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// fileMap is what one walk of a document's node tree (walkLines) records:
// where each key path is, to give Validate's errors a line and yaml.v3's a
// path.
type fileMap struct {
	// lines is the line of every key and list item by field path
	// (static.loadbalancers[0].ips[1]); "" is the top level.
	lines map[string]int
	// values are the value nodes and their paths, in file order.
	values []valueAt
	// keyParent is the path of the mapping holding a key, by line and name.
	keyParent map[lineName]string
}

type valueAt struct {
	path string
	n    *yaml.Node
}

type lineName struct {
	line int
	name string
}

// walkLines walks a document's node tree once, without following aliases (an
// aliased value is walked where its anchor is written). It returns the map of
// the file and the problems yaml.v3 would let through: null list items and
// keys that are not plain strings.
func walkLines(body *yaml.Node) (*fileMap, []error) {
	m := &fileMap{lines: map[string]int{"": body.Line}, keyParent: make(map[lineName]string)}
	var errs []error
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		m.values = append(m.values, valueAt{path, n})
		switch n.Kind {
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				m.lines[p] = item.Line
				if isNull(item) {
					errs = append(errs, &fieldError{path: p, line: item.Line, msg: "a list item is empty (null)"})
					continue
				}
				walk(item, p)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				switch {
				case isMerge(k):
					// The merged keys belong to this mapping.
					walk(v, path)
				case k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str":
					errs = append(errs, fmt.Errorf("line %d: a key %s is %s, not a string", k.Line, where(path), describe(k)))
				default:
					p := joinPath(path, k.Value)
					if _, seen := m.lines[p]; !seen {
						m.lines[p] = k.Line
					}
					m.keyParent[lineName{k.Line, k.Value}] = path
					walk(v, p)
				}
			}
		}
	}
	walk(body, "")
	return m, errs
}

// keysOf lists the keys of each mapping type yaml.v3 decodes into, by the
// name its messages give the type.
var keysOf = func() map[string][]string {
	m := make(map[string][]string)
	for _, v := range []any{Config{}, ProbeConfig{}, dnsKeys{}, StaticConfig{}, LoadBalancer{}, portKeys{}, hostnameKeys{}, tlsKeys{}, KubernetesConfig{}, KubernetesTLS{}} {
		t := reflect.TypeOf(v)
		var keys []string
		for f := range t.Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
				keys = append(keys, name)
			}
		}
		m[t.String()] = keys
	}
	return m
}()

// yaml.v3's messages (v3.0.1, decode.go), after "line N: ".
var (
	lineOfMessage   = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	columnOfMessage = regexp.MustCompile(`(?s)^column (\d+): (.*)$`)
	fieldNotFound   = regexp.MustCompile(`^field (.*) not found in type (\S+)$`)
	keyDefined      = regexp.MustCompile(`^mapping key (".*") already defined at line (\d+)$`)
	cannotUnmarshal = regexp.MustCompile("(?s)^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// decodeErrors turns the error of yaml.v3's Decode into one error per
// problem, worded for the file's author: keys and kinds of value instead of
// Go types, and the key path where the file tells it. An error in an
// anchored value comes once, not once per alias.
func (m *fileMap) decodeErrors(err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{fmt.Errorf("invalid YAML: %w", err)}
	}
	var errs []error
	seen := make(map[string]bool, len(te.Errors))
	for _, msg := range te.Errors {
		if !seen[msg] {
			seen[msg] = true
			errs = append(errs, m.reword(msg))
		}
	}
	return errs
}

// reword rewrites one "line N: ..." message of yaml.v3, or "line N: column
// C: ..." of lineError.
func (m *fileMap) reword(msg string) error {
	sub := lineOfMessage.FindStringSubmatch(msg)
	if sub == nil {
		return errors.New(msg)
	}
	line, _ := strconv.Atoi(sub[1])
	text := sub[2]
	// The value's path: by its position, or else by what the message says
	// of it, when only one value on the line fits.
	var match func(*yaml.Node) bool
	if c := columnOfMessage.FindStringSubmatch(text); c != nil {
		column, _ := strconv.Atoi(c[1])
		text = c[2]
		match = func(n *yaml.Node) bool { return n.Column == column }
	}
	if f := fieldNotFound.FindStringSubmatch(text); f != nil {
		out := fmt.Sprintf("line %d: unknown key %q", line, truncate(f[1]))
		if parent, ok := m.keyParent[lineName{line, f[1]}]; ok {
			out += " " + where(parent)
		}
		if keys := keysOf[f[2]]; len(keys) > 0 {
			out += " (known: " + strings.Join(keys, ", ") + ")"
		}
		return errors.New(out)
	}
	if d := keyDefined.FindStringSubmatch(text); d != nil {
		name, _ := strconv.Unquote(d[1])
		out := fmt.Sprintf("line %d: duplicate key %q", line, truncate(name))
		if parent, ok := m.keyParent[lineName{line, name}]; ok {
			out += " " + where(parent)
		}
		return fmt.Errorf("%s (first at line %s)", out, d[2])
	}
	if u := cannotUnmarshal.FindStringSubmatch(text); u != nil {
		tag, value := u[1], u[2]
		got := kindWords[tag]
		if got == "" {
			got = tag
		}
		got = strings.TrimSpace(got + " " + quoteIf(tag, value))
		text = fmt.Sprintf("expected %s, got %s", typeWords(u[3]), got)
		// yaml.v3 prints at most 10 characters of the value.
		prefix, cut := strings.CutSuffix(value, "...")
		match = func(n *yaml.Node) bool {
			return n.ShortTag() == tag && (n.Value == value || cut && strings.HasPrefix(n.Value, prefix) || value == "" && n.Kind != yaml.ScalarNode)
		}
	}
	if match != nil {
		path, found := "", 0
		for _, v := range m.values {
			if v.n.Line == line && match(v.n) {
				path, found = v.path, found+1
			}
		}
		if found == 1 {
			return &fieldError{path: path, line: line, msg: text}
		}
	}
	return fmt.Errorf("line %d: %s", line, text)
}

// kindWords names the tags yaml.v3 prints.
var kindWords = map[string]string{
	"!!seq": "a list", "!!map": "a mapping", "!!str": "string", "!!int": "integer",
	"!!float": "number", "!!bool": "boolean", "!!null": "null",
}

// typeWords names what a value of the Go type yaml.v3 prints is.
func typeWords(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case goType == "time.Duration":
		return "a duration like 2s or 500ms"
	default: // the structs of this package
		return "a mapping"
	}
}

// isNull reports whether n is a null scalar (an absent value, ~ or null).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
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
	}
	if w, ok := kindWords[n.ShortTag()]; ok {
		if n.ShortTag() == "!!null" {
			return w
		}
		return w + " " + quoteIf(n.ShortTag(), truncate(n.Value))
	}
	return fmt.Sprintf("%s %q", truncate(n.ShortTag()), truncate(n.Value))
}

// quoteIf quotes a string value for a message, and leaves others as written.
func quoteIf(tag, value string) string {
	if tag == "!!str" {
		return strconv.Quote(value)
	}
	return value
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
