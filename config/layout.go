package config

import (
	"fmt"
	"strings"
)

// layoutProblem reads a file that yaml.v3 refused, line by line, for the
// mistakes people make when they edit YAML by hand: a tab in the
// indentation, a line that lines up with no block above it, a key indented
// under a value, a list item missing its "-" or one among a mapping's
// keys, and a bracket or quote never closed. yaml.v3 reports where its
// parser gave up, often a line early and in its own terms ("did not find
// expected '-' indicator"); this names the line that is wrong and says what
// is wrong with it. It understands the block style config files use
// (mappings, "- " lists, flow collections, quoted strings, block scalars,
// comments) and returns ok false where it is unsure, so the parser's own
// message is used rather than a wrong guess.
func layoutProblem(data []byte) (line, col int, msg string, ok bool) {
	s := &layout{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i, text := range lines {
		if p := s.line(i+1, text); p != nil {
			return p.line, p.col, p.msg, true
		}
		if s.unsure {
			return 0, 0, "", false
		}
	}
	if p := s.end(len(lines)); p != nil {
		return p.line, p.col, p.msg, true
	}
	return 0, 0, "", false
}

// block is a mapping or a list whose entries start at one column.
type block struct {
	indent int
	seq    bool
	line   int    // where its first entry is
	key    string // its first key, for messages; "" for a list
	last   int    // the line of its latest entry
	// lastKey is the latest entry's key, for messages.
	lastKey string
	// compact: a list at the same indent as the key that holds it
	// ("rules:\n- a"), which ends at the next key of that column.
	compact bool
}

// open is a bracket or quote not closed on its line.
type open struct {
	char       byte
	line, col  int
	lineIndent int
}

type problem struct {
	line, col int
	msg       string
}

type layout struct {
	stack []block
	// pending: the previous entry ended with "key:" or "-" and nothing
	// after, so the next line may open a block deeper than parentIndent.
	pending      bool
	parentIndent int
	parentKey    bool // the pending entry is a key (a list may then share its column)
	// blockScalar: lines indented more than scalarIndent are text ("|", ">").
	blockScalar  bool
	scalarIndent int
	// flow: a [ or { (or a quote) continues on the next lines.
	flow   []open
	quote  *open
	unsure bool
}

func (s *layout) top() *block {
	if len(s.stack) == 0 {
		return nil
	}
	return &s.stack[len(s.stack)-1]
}

// line reads one line; it returns the first problem found.
func (s *layout) line(n int, text string) *problem {
	indent := len(text) - len(strings.TrimLeft(text, " "))
	rest := text[indent:]
	trimmed := strings.TrimSpace(rest)

	if s.quote != nil || len(s.flow) > 0 {
		// Inside a quoted string or a flow collection that goes on: tabs
		// and columns mean nothing here. A line that starts a new key at
		// or left of where the collection began is one the user meant to
		// be outside it, so the bracket was never closed.
		if s.quote == nil && len(s.flow) > 0 && indent <= s.flow[0].lineIndent && looksLikeEntry(trimmed) {
			return s.unclosed(s.flow[len(s.flow)-1])
		}
		s.scan(n, text, 0, indent)
		return nil
	}
	if s.blockScalar {
		if trimmed == "" || indent > s.scalarIndent {
			return nil
		}
		s.blockScalar = false
	}
	if strings.HasPrefix(strings.TrimLeft(text, " \t"), "#") || strings.TrimSpace(text) == "" {
		return nil
	}
	if strings.HasPrefix(rest, "\t") || strings.HasPrefix(trimmed, "\t") {
		return &problem{n, indent + 1, "a tab in the indentation: YAML indents with spaces only; replace the tab with spaces lining up with the lines above"}
	}
	if trimmed == "---" || trimmed == "..." || strings.HasPrefix(trimmed, "--- ") || strings.HasPrefix(trimmed, "%") {
		s.stack, s.pending = nil, false
		return nil
	}

	item := trimmed == "-" || strings.HasPrefix(trimmed, "- ")
	key, _, hasKey := splitKey(trimmed)
	if p := s.place(n, indent, item, hasKey, key); p != nil {
		return p
	}
	if s.unsure {
		return nil
	}
	s.content(n, text, indent, item)
	return nil
}

// place fits a line starting at indent into the open blocks.
func (s *layout) place(n, indent int, item, hasKey bool, key string) *problem {
	what := describeLine(item, key)
	if s.pending {
		s.pending = false
		t := s.top()
		switch {
		case indent > s.parentIndent:
			if !item && !hasKey {
				s.unsure = true // a value on its own line: fine YAML, not our model
				return nil
			}
			s.stack = append(s.stack, block{indent: indent, seq: item, line: n, key: key, last: n, lastKey: key})
			return nil
		case indent == s.parentIndent && item && s.parentKey && t != nil && !t.seq:
			s.stack = append(s.stack, block{indent: indent, seq: true, line: n, compact: true, last: n})
			return nil
		}
		// "key:" with nothing under it: a null value. Carry on below.
	}
	if !item && !hasKey {
		// A plain scalar going on from the line above, or something this
		// model does not follow.
		s.unsure = true
		return nil
	}
	if len(s.stack) == 0 {
		s.stack = append(s.stack, block{indent: indent, seq: item, line: n, key: key, last: n, lastKey: key})
		return nil
	}
	if t := s.top(); indent > t.indent {
		above := "the entry"
		if t.lastKey != "" {
			above = fmt.Sprintf("%q", t.lastKey)
		}
		return &problem{n, indent + 1, fmt.Sprintf("%s is indented more than %s at line %d, whose value is already on that line; "+
			"indent it %s to line up with %s, or end line %d after its \":\" to open a block under it",
			what, above, t.last, spaces(t.indent), above, t.last)}
	}
	levels := s.levels()
	for len(s.stack) > 0 && s.top().indent > indent {
		s.stack = s.stack[:len(s.stack)-1]
	}
	t := s.top()
	if t != nil && t.compact && !item && t.indent == indent {
		s.stack = s.stack[:len(s.stack)-1] // the key after a compact list
		t = s.top()
	}
	switch {
	case t == nil || t.indent != indent:
		return &problem{n, indent + 1, fmt.Sprintf("%s is indented %s, which lines up with nothing above it (%s); "+
			"YAML nests by indentation, so use one of those", what, spaces(indent), levels)}
	case t.seq && !item:
		return &problem{n, indent + 1, fmt.Sprintf("%s lines up with the \"- \" items of the list at line %d but has no \"-\"; "+
			"start a new item with \"- %s:\", or indent it to line up with the keys of the item above", what, t.line, key)}
	case !t.seq && item:
		return &problem{n, indent + 1, fmt.Sprintf("a \"- \" list item among the keys of the mapping at line %d (%s); "+
			"a block holds either keys or \"- \" items: make the keys items too, or remove this \"-\"", t.line, t.name())}
	}
	t.last, t.lastKey = n, key
	return nil
}

// content reads what the line opens: a block under an item or key, a
// block scalar, or a flow collection or quote that goes on.
func (s *layout) content(n int, text string, indent int, item bool) {
	pos := indent
	if item {
		// "- key: value" holds a mapping whose keys start after the dash.
		after := text[indent+1:]
		inner := len(after) - len(strings.TrimLeft(after, " "))
		pos = indent + 1 + inner
		rest := strings.TrimSpace(after)
		if rest == "" || strings.HasPrefix(rest, "#") {
			s.pending, s.parentIndent, s.parentKey = true, indent, false
			return
		}
		if k, _, ok := splitKey(rest); ok {
			s.stack = append(s.stack, block{indent: pos, line: n, key: k, last: n, lastKey: k})
		} else if strings.HasPrefix(rest, "- ") || rest == "-" {
			s.unsure = true // "- - x": nested lists on one line
			return
		}
	}
	rest := strings.TrimSpace(text[pos:])
	if _, value, ok := splitKey(rest); ok {
		value = strings.TrimSpace(stripComment(value))
		switch {
		case value == "":
			s.pending, s.parentIndent, s.parentKey = true, pos, true
			return
		case strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">"):
			s.blockScalar, s.scalarIndent = true, pos
			return
		case strings.HasPrefix(value, "&") || strings.HasPrefix(value, "!"):
			// An anchor or tag before a block: this model does not follow it.
			if !strings.ContainsAny(value, " ") {
				s.unsure = true
				return
			}
		}
	}
	s.scan(n, text, pos, indent)
}

// scan follows brackets and quotes from column pos of a line, so that a
// collection or string that goes on to the next line is known.
func (s *layout) scan(n int, text string, pos, indent int) {
	for i := pos; i < len(text); i++ {
		c := text[i]
		if s.quote != nil {
			switch {
			case s.quote.char == '\'' && c == '\'' && i+1 < len(text) && text[i+1] == '\'':
				i++ // '' is an escaped quote
			case s.quote.char == '"' && c == '\\':
				i++
			case c == s.quote.char:
				s.quote = nil
			}
			continue
		}
		switch c {
		case '#':
			if i == 0 || text[i-1] == ' ' || text[i-1] == '\t' {
				return
			}
		case '"', '\'':
			// A quote opens a string only where a value starts.
			if startsValue(text, i) {
				s.quote = &open{char: c, line: n, col: i + 1, lineIndent: indent}
			}
		case '[', '{':
			if len(s.flow) > 0 || startsValue(text, i) {
				s.flow = append(s.flow, open{char: c, line: n, col: i + 1, lineIndent: indent})
			}
		case ']', '}':
			if len(s.flow) > 0 {
				s.flow = s.flow[:len(s.flow)-1]
			}
		}
	}
}

// end reports a bracket or quote still open at the end of the file.
func (s *layout) end(lines int) *problem {
	if s.quote != nil {
		return &problem{s.quote.line, s.quote.col, fmt.Sprintf("the string quoted with %c here is never closed; add the closing %c", s.quote.char, s.quote.char)}
	}
	if len(s.flow) > 0 {
		return s.unclosed(s.flow[len(s.flow)-1])
	}
	return nil
}

func (s *layout) unclosed(o open) *problem {
	closing := byte(']')
	if o.char == '{' {
		closing = '}'
	}
	return &problem{o.line, o.col, fmt.Sprintf("the %c here is never closed; add %c after its last entry", o.char, closing)}
}

// levels lists the open blocks' columns, deepest first, for messages.
func (s *layout) levels() string {
	var parts []string
	seen := map[int]bool{}
	for i := len(s.stack) - 1; i >= 0; i-- {
		b := s.stack[i]
		if seen[b.indent] {
			continue
		}
		seen[b.indent] = true
		parts = append(parts, fmt.Sprintf("%s for %s at line %d", spaces(b.indent), b.name(), b.line))
	}
	return strings.Join(parts, ", ")
}

func (b *block) name() string {
	if b.seq {
		return "the list items"
	}
	if b.key != "" {
		return fmt.Sprintf("%q", b.key)
	}
	return "the keys"
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return fmt.Sprintf("%d spaces", n)
}

func describeLine(item bool, key string) string {
	switch {
	case item:
		return "this list item"
	case key != "":
		return fmt.Sprintf("%q", key)
	}
	return "this line"
}

// looksLikeEntry: a key or a list item, the start of a block entry.
func looksLikeEntry(trimmed string) bool {
	_, _, ok := splitKey(trimmed)
	return ok || strings.HasPrefix(trimmed, "- ")
}

// splitKey splits "key: value" (or "key:") at the first ": " outside
// quotes and brackets. Keys in quotes keep their quotes off.
func splitKey(s string) (key, value string, ok bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			if i == 0 {
				quote = c
			}
		case c == '[' || c == '{':
			if i == 0 {
				return "", "", false // a flow collection, not a key
			}
			depth++
		case c == ']' || c == '}':
			depth--
		case c == '#' && i > 0 && s[i-1] == ' ':
			return "", "", false
		case c == ':' && depth <= 0 && (i+1 == len(s) || s[i+1] == ' ' || s[i+1] == '\t'):
			return strings.Trim(s[:i], `"' `), s[i+1:], i > 0
		}
	}
	return "", "", false
}

// startsValue: position i is where a value can begin (after ": ", "- ",
// "[", "{", ",", or at the start), so a quote or bracket there is syntax
// and not part of a plain word such as it's.
func startsValue(text string, i int) bool {
	j := i - 1
	for j >= 0 && text[j] == ' ' {
		j--
	}
	if j < 0 {
		return true
	}
	switch text[j] {
	case ':', '-', '[', '{', ',', '?':
		return true
	}
	return false
}

func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ') {
			return s[:i]
		}
	}
	return s
}
