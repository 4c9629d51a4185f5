package e2e

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// Main builds the nicproxy command into a temporary directory, sets
// *binary to it, runs the package's tests and returns their exit code, for
// a package's TestMain: os.Exit(e2e.Main(m, &nicproxyBinary)). Tests run
// the binary with the race detector; benchmarks measure the binary users
// run.
func Main(m *testing.M, binary *string) int {
	dir, err := os.MkdirTemp("", "nicproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*binary = filepath.Join(dir, "nicproxy")
	flag.Parse()
	buildArgs := []string{"build", "-race", "-o", *binary, "nicproxy/cmd/nicproxy"}
	if bench := flag.Lookup("test.bench"); bench != nil && bench.Value.String() != "" {
		buildArgs = slices.Delete(buildArgs, 1, 2)
	}
	build := exec.Command("go", buildArgs...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build nicproxy:", err)
		return 1
	}
	return m.Run()
}

// Result is one nicproxy invocation's output and exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs binary (the nicproxy command) inside the lab's host namespace,
// where the host has exactly ens33 and ens160 and a default route through
// ens33, and waits for it.
func Run(t *testing.T, lab *netlab.Lab, binary string, args ...string) Result {
	t.Helper()
	cmd := lab.Command(binary, args...)
	// The race runtime otherwise sleeps a second at every exit.
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run nicproxy %v: %v", args, err)
	}
	return Result{stdout.String(), stderr.String(), code}
}

// WriteConfig writes text to a config file of the test's own and returns
// its path.
func WriteConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// DialProxyAt connects to the proxy at addr in the lab's host namespace;
// the connection closes when the test ends and gives up after 20s.
func DialProxyAt(t *testing.T, lab *netlab.Lab, addr string) net.Conn {
	t.Helper()
	conn, err := lab.DialHost("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// ProcField is the first word after key ("Uid:", "CapEff:") in a
// /proc/PID/status text, "" when there is none.
func ProcField(status, key string) string {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}
