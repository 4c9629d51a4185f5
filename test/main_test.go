package test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// nicproxyBinary is the nicproxy command built once for the end-to-end tests, which
// run it as users do: as a process, inside the lab's host namespace.
var nicproxyBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nicproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nicproxyBinary = filepath.Join(dir, "nicproxy")
	// Tests run the binary with the race detector; benchmarks measure the
	// binary users run.
	flag.Parse()
	buildArgs := []string{"build", "-race", "-o", nicproxyBinary, "nicproxy/cmd/nicproxy"}
	if bench := flag.Lookup("test.bench"); bench != nil && bench.Value.String() != "" {
		buildArgs = slices.Delete(buildArgs, 1, 2)
	}
	build := exec.Command("go", buildArgs...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build nicproxy:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
