package test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPrerequisites: the README's test prerequisites and .ci/run install
// the same Debian packages, and those include a C compiler and C library
// headers, without which go test -race (cgo) fails in every package; the
// README says how to get Go 1.26 on Debian 12, and .ci/run does it when
// no Go of go.mod's version is there.
func TestPrerequisites(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	_, section, _ = strings.Cut(section, "\n## Test\n")
	section, _, _ = strings.Cut(section, "\n## ")

	// README: "(on Debian: `apt-get install pkg pkg ...`)", over lines.
	m := regexp.MustCompile("on Debian: `apt-get install ([^`]+)`").FindStringSubmatch(section)
	if m == nil {
		t.Fatalf("the README's Test section has no `apt-get install ...` list:\n%s", section)
	}
	documented := strings.Fields(m[1])
	// .ci/run: the first apt-get install, up to its redirection.
	c := regexp.MustCompile(`(?s)apt-get install -y -qq --no-install-recommends (.+?)>/dev/null`).FindStringSubmatch(string(ci))
	if c == nil {
		t.Fatalf(".ci/run has no apt-get install:\n%s", ci)
	}
	installed := strings.Fields(strings.ReplaceAll(c[1], "\\\n", " "))
	slices.Sort(documented)
	slices.Sort(installed)
	if !slices.Equal(documented, installed) {
		t.Errorf("the README lists %v, .ci/run installs %v", documented, installed)
	}
	for _, want := range []string{"gcc", "libc6-dev"} {
		if !slices.Contains(installed, want) {
			t.Errorf(".ci/run does not install %s, which go test -race (cgo) needs", want)
		}
	}
	for _, want := range []string{"-race requires cgo", "https://go.dev/dl/", "sha256sum", "bookworm-backports", "golang-1.23-go", "GOTOOLCHAIN=auto"} {
		if !strings.Contains(strings.Join(strings.Fields(section), " "), want) {
			t.Errorf("the README's Test section does not say %q", want)
		}
	}
	for _, want := range []string{"-t bookworm-backports golang-1.23-go", "GOTOOLCHAIN=auto", `awk '$1 == "go" { print $2; exit }' go.mod`} {
		if !strings.Contains(string(ci), want) {
			t.Errorf(".ci/run lacks %q: it must get go.mod's Go on a fresh Debian 12", want)
		}
	}
}
