package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration, placed so that an editor can jump
// to it: file, line and column of the offending node, and the field path
// (listen[0].addr, rules[2].via, ...) so the message reads without the file.
type Error struct {
	// File is the file name as given to Load or Parse; "" for flag errors.
	File string
	// Line and Column are 1-based; Line is 0 when the position is unknown
	// (flag errors, some YAML syntax errors).
	Line, Column int
	// Path is the field path, or the flag ("-i", "-l"); may be "".
	Path string
	// Msg says what is wrong and, where it helps, what would be right.
	Msg string
}

// Error formats as "file:line:col: path: msg", dropping the parts that are
// unknown: no position gives "file: path: msg" (or "path: msg" for flags),
// no path drops "path: ".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(max(e.Column, 1)))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order, so a
// user fixes them all in one edit instead of one per run.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual problems to errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors puts problems in file order. Position-less problems (flags)
// come first because they concern the whole run, not a line of the file.
// The sort is stable so problems found at one node keep their order.
func sortErrors(es []*Error) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// syntaxError turns a yaml.v3 error ("yaml: line 3: ...") into an Error
// placed as well as the library allows. yaml.v3 exposes no column (so
// column 1), prints 0-based lines for parser (but not scanner) errors, and
// drops "line N" when N would be 0; the corrections below follow its
// parserc.go and scannerc.go.
func syntaxError(file string, data []byte, err error) *Error {
	// First, in words, the layout mistake that most often causes it.
	if line, col, msg, ok := layoutProblem(data); ok {
		return &Error{File: file, Line: line, Column: col, Msg: msg}
	}
	text, _ := strings.CutPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(text, "line "); ok {
		num, msg, ok := strings.Cut(rest, ": ")
		if n, err := strconv.Atoi(num); ok && err == nil && n > 0 {
			line, text = n, msg
			if isParserProblem(text) {
				line++
			}
		}
	} else if name, ok := strings.CutPrefix(text, "unknown anchor '"); ok {
		// Raised after parsing, with no position; the alias is easy to
		// find in the text.
		name = strings.TrimSuffix(name, "' referenced")
		if l, c, ok := find(data, "*"+name); ok {
			return &Error{File: file, Line: l, Column: c, Msg: "yaml: " + text}
		}
		return &Error{File: file, Msg: "yaml: " + text}
	} else if strings.HasPrefix(text, "anchor '") || strings.HasPrefix(text, "document contains") {
		return &Error{File: file, Msg: "yaml: " + text}
	}
	return &Error{File: file, Line: line, Column: 1, Msg: "yaml: " + text}
}

// isParserProblem tells the parser's messages (0-based line) from the
// scanner's (1-based line).
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected '-' indicator", "did not find expected <document start>",
		"did not find expected <stream-start>", "did not find expected key",
		"did not find expected node content", "found duplicate %TAG directive",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// find returns the 1-based line and column of the first s in data.
func find(data []byte, s string) (line, col int, ok bool) {
	i := strings.Index(string(data), s)
	if i < 0 {
		return 0, 0, false
	}
	before := string(data[:i])
	return strings.Count(before, "\n") + 1, i - strings.LastIndexByte(before, '\n'), true
}
