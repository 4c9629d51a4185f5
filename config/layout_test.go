package config

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestLayoutProblems: each hand-editing mistake that yaml.v3 reports in
// its parser's terms, often a line early, is named at its own line and
// column and said in words.
func TestLayoutProblems(t *testing.T) {
	opts := Options{Interfaces: []string{"ens33", "ens160"}}
	tests := []struct {
		name, text, want string
	}{
		{"a key indented between two blocks", "rules:\n  - name: a\n   via: ens33\n",
			`config.yaml:3:4: "via" is indented 3 spaces, which lines up with nothing above it (4 spaces for "name" at line 2, 2 spaces for the list items at line 2, 0 spaces for "rules" at line 1); YAML nests by indentation, so use one of those`},
		{"a key indented under a value", "rules:\n  - name: a\n     via: ens33\n",
			`config.yaml:3:6: "via" is indented more than "name" at line 2, whose value is already on that line; indent it 4 spaces to line up with "name", or end line 2 after its ":" to open a block under it`},
		{"under the latest key, not the first", "log:\n  level: info\n  format: json\n    access: true\n",
			`config.yaml:4:5: "access" is indented more than "format" at line 3, whose value is already on that line; indent it 2 spaces to line up with "format", or end line 3 after its ":" to open a block under it`},
		{"one space short of its siblings", "listen:\n  - addr: 127.0.0.1:1080\n protocol: mixed\n",
			`config.yaml:3:2: "protocol" is indented 1 space, which lines up with nothing above it (4 spaces for "addr" at line 2, 2 spaces for the list items at line 2, 0 spaces for "listen" at line 1); YAML nests by indentation, so use one of those`},
		{"a tab", "rules:\n  - name: a\n\tvia: ens33\n",
			`config.yaml:3:1: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces lining up with the lines above`},
		{"a tab after spaces", "log:\n  \tlevel: info\n",
			`config.yaml:2:3: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces lining up with the lines above`},
		{"a missing -", "rules:\n  - name: a\n    via: ens33\n  name: b\n    via: ens160\n",
			`config.yaml:4:3: "name" lines up with the "- " items of the list at line 2 but has no "-"; start a new item with "- name:", or indent it to line up with the keys of the item above`},
		{"an item among keys", "rules:\n  name: a\n  - via: ens33\n",
			`config.yaml:3:3: a "- " list item among the keys of the mapping at line 2 ("name"); a block holds either keys or "- " items: make the keys items too, or remove this "-"`},
		{"a bracket never closed before the next key", "rules:\n  - via: [ens33\ndefault: ens33\n",
			`config.yaml:2:10: the [ here is never closed; add ] after its last entry`},
		{"a brace never closed at the end", "log: {level: info\n",
			`config.yaml:1:6: the { here is never closed; add } after its last entry`},
		{"a quote never closed", "default: \"ens33\nrules: []\n",
			`config.yaml:1:10: the string quoted with " here is never closed; add the closing "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("config.yaml", []byte(tt.text), opts)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestLayoutNoFalseAlarm: on files that are good YAML, and on the shapes
// of YAML the model does not follow, layoutProblem finds nothing, so it can
// never put a wrong explanation in front of a real parser error.
func TestLayoutNoFalseAlarm(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.yaml")
	files = append(files, "default.yaml")
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	texts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(b)
	}
	for name, text := range map[string]string{
		"compact list":            "rules:\n- name: a\n  via: ens33\n- name: b\n  via: ens160\ndefault: ens33\n",
		"list under a list item":  "rules:\n  - name: a\n    port:\n      - 80\n      - 443\n    via: ens33\n",
		"flow over lines":         "rules:\n  - dst: [192.0.2.0/24,\n      198.51.100.0/24]\n    via: ens33\ndefault: ens33\n",
		"quoted over lines":       "default: \"ens\n  33\"\nlog: {level: info}\n",
		"block scalar":            "x: |\n  text: not a key\n    deeper\n  \tand a tab\ndefault: ens33\n",
		"comments anywhere":       "# top\nlog:\n    # odd comment\n  level: info   # why\n# end\n",
		"plain scalar over lines": "default:\n  ens33\n",
		"value continued":         "default: ens\n  33\n",
		"anchors":                 "x: &a\n  level: info\nlog: *a\n",
		"apostrophe in a value":   "rules:\n  - name: it's fine\n    via: ens33\n",
		"documents":               "---\ndefault: ens33\n...\n",
		"null key then sibling":   "log:\ndefault: ens33\n",
		"CRLF":                    "log:\r\n  level: info\r\ndefault: ens33\r\n",
	} {
		texts[name] = text
	}
	for name, text := range texts {
		var v any
		if err := yaml.Unmarshal([]byte(text), &v); err != nil {
			t.Errorf("%s is not good YAML, so proves nothing here: %v", name, err)
		}
		if line, col, msg, ok := layoutProblem([]byte(text)); ok {
			t.Errorf("%s: false alarm at %d:%d: %s\n%s", name, line, col, msg, text)
		}
	}
}
