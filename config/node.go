package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks yaml.v3 nodes by hand instead of unmarshalling into structs:
// only the nodes know where a value was written, and only a hand walk can
// refuse unknown and duplicate keys instead of silently dropping them.
type decoder struct {
	file  string
	errs  []*Error
	warns []*Error
}

// errorf records a problem at n; a nil n records it without a position.
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, d.at(n, path, fmt.Sprintf(format, args...)))
}

// warnf records a warning at n; a nil n records it without a position.
func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	d.warns = append(d.warns, d.at(n, path, fmt.Sprintf(format, args...)))
}

func (d *decoder) at(n *yaml.Node, path, msg string) *Error {
	e := &Error{File: d.file, Path: path, Msg: msg}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// document parses data as exactly one YAML document holding a mapping.
func (d *decoder) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs = append(d.errs, &Error{File: d.file, Line: 1, Column: 1,
				Msg: "the file is empty; write at least a default or a rule (see configs/ for examples)"})
		} else {
			d.errs = append(d.errs, syntaxError(d.file, data, err))
		}
		return nil, false
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(d.file, data, err))
			return nil, false
		}
		// A second document would be silently ignored by a plain
		// Unmarshal; refuse it so an edit below "---" is never lost.
		// An empty one (a trailing "---") loses nothing.
		if !isNull(&next) {
			d.errorf(&next, "", "a second YAML document (after ---); nicproxy reads one")
			return nil, false
		}
	}
	root := resolve(&doc)
	if root.Kind == yaml.ScalarNode && isNull(root) {
		d.errorf(root, "", "the file is empty; write at least a default or a rule (see configs/ for examples)")
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "want a mapping at the top level, got %s", kindName(root))
		return nil, false
	}
	return root, true
}

// resolve follows document wrappers and aliases to the node holding the
// value, so anchors and aliases work everywhere a plain value does.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

// isNull reports an empty or ~ value, which a section key treats as absent
// (a list whose entries are all commented out is a common sight).
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// kindName describes a node for "want X, got Y" messages.
func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// field is one key/value pair of a mapping.
type field struct{ key, val *yaml.Node }

// pairs returns the pairs of mapping n in file order, reporting duplicate
// keys. Merge keys (<<) are expanded; explicit keys win over merged ones as
// YAML specifies, and are not duplicates of them.
func (d *decoder) pairs(n *yaml.Node, path string) ([]field, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", kindName(n))
		return nil, false
	}
	var out, merged []field
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "want a plain key, got %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, join(path, k.Value), "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, field{k, v})
	}
	for _, f := range merged {
		if _, ok := seen[f.key.Value]; !ok {
			seen[f.key.Value] = f.key
			out = append(out, f)
		}
	}
	return out, true
}

// mergeSources expands the value of a << key: a mapping or a list of them,
// earlier ones winning.
func (d *decoder) mergeSources(v *yaml.Node, path string) []field {
	v = resolve(v)
	if v.Kind == yaml.MappingNode {
		fs, _ := d.pairs(v, path)
		return fs
	}
	if v.Kind == yaml.SequenceNode {
		var out []field
		for _, m := range v.Content {
			out = append(out, d.mergeSources(m, path)...)
		}
		return out
	}
	d.errorf(v, join(path, "<<"), "want a mapping or a list of mappings to merge, got %s", kindName(v))
	return nil
}

// fields is pairs plus a schema: keys outside known are errors, listing
// what would have been accepted, because a misspelt key silently ignored is
// a rule that silently does not apply.
func (d *decoder) fields(n *yaml.Node, path string, known ...string) (map[string]field, bool) {
	ps, ok := d.pairs(n, path)
	if !ok {
		return nil, false
	}
	out := make(map[string]field, len(ps))
	for _, f := range ps {
		if !slices.Contains(known, f.key.Value) {
			d.errorf(f.key, join(path, f.key.Value), "unknown field (want one of: %s)", strings.Join(known, ", "))
			continue
		}
		out[f.key.Value] = f
	}
	return out, true
}

// seq returns the elements of list n. With scalarOK a single value stands
// for a one-element list, because `dst: 10.0.0.0/8` is what people write.
// A null value gives an empty list, for the caller to judge.
func (d *decoder) seq(n *yaml.Node, path string, scalarOK bool) ([]*yaml.Node, bool) {
	n = resolve(n)
	switch {
	case isNull(n):
		return nil, true
	case n.Kind == yaml.SequenceNode:
		out := make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			out[i] = resolve(c)
		}
		return out, true
	case n.Kind == yaml.ScalarNode && scalarOK:
		return []*yaml.Node{n}, true
	}
	d.errorf(n, path, "want a list, got %s", kindName(n))
	return nil, false
}

// scalar returns the text of a single value, refusing lists, mappings and
// empty values.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if isNull(n) {
		d.errorf(n, path, "needs a value")
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "want a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// join builds a field path: "" + "listen" is "listen", "timeouts" + "idle"
// is "timeouts.idle".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index builds an element path such as "rules[2]".
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
