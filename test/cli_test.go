package test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// result of one nicproxy invocation.
type result struct {
	stdout, stderr string
	code           int
}

// nicproxy runs the built binary inside the lab's host namespace
// (e2e.Run).
func nicproxy(t *testing.T, lab *netlab.Lab, args ...string) result {
	t.Helper()
	r := e2e.Run(t, lab, nicproxyBinary, args...)
	return result{r.Stdout, r.Stderr, r.Code}
}

// writeConfig is e2e.WriteConfig.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	return e2e.WriteConfig(t, text)
}

const routeConfig = `
users:
  - name: alice
    password: s3cret
rules:
  - name: alice-wan
    user: [alice]
    via: ens160
  - name: corp
    domain: [example.com, .corp.example]
    port: [443, "8000-8999"]
    via: [ens160, ens33]
  - name: no-smtp
    port: [25]
    action: reject
  - name: lan
    dst: [192.0.2.0/24]
    via: ens33
default: ens160
`

func TestCLI(t *testing.T) {
	lab := netlab.New(t)
	good := writeConfig(t, routeConfig)
	bad := writeConfig(t, "rules:\n  - name: wan\n    dst: [198.51.100.0/24]\n    via: ens16O\n  - port: [70000]\n    via: ens33\nbogus: 1\n")
	misindented := writeConfig(t, "rules:\n  - name: a\n   via: ens33\n")
	tabbed := writeConfig(t, "rules:\n  - name: a\n\tvia: ens33\n")
	loopbackFile := writeConfig(t, "interfaces: {lo: {}}\ndefault: lo\n")
	// One rule each for -s, --listener and --udp; without them, the
	// default: each flag is what moves the route.
	flags := writeConfig(t, `
listen:
  - {name: front, addr: 127.0.0.1:1080}
  - {name: back, addr: 127.0.0.1:1081}
rules:
  - {name: lan-clients, src: [10.0.0.0/8], via: ens33}
  - {name: back-door, listener: [back], via: ens33}
  - {name: udp-out, network: udp, via: ens33}
default: ens160
`)
	var busy net.Listener
	if err := lab.InHost(func() (err error) { busy, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // each must appear
		wantStderr []string
	}{
		{"version", []string{"version"}, 0, []string{"nicproxy "}, nil},
		{"--version", []string{"--version"}, 0, []string{"nicproxy "}, nil},
		{"unknown command", []string{"nosuch"}, 2, nil, []string{`unknown command "nosuch"`}},
		{"check a good file", []string{"check", "-c", good}, 0,
			[]string{"config.yaml: OK", "ens160  up", "ens33   up", "0  alice-wan  user alice", "-> ens160 -> ens33 (failover, in order)", "2  no-smtp    port 25", "-> reject", "default:   ens160",
				"udp:       per association 4096 destinations, 16 datagrams and 1024 KiB queued while deciding, 64 names in lookup; 1024 lookups in all"}, nil},
		{"check every error of a bad file with its position", []string{"check", "-c", bad}, 2, nil, []string{
			bad + `:4:10: rules[0].via: unknown interface "ens16O" (have: ens33, ens160)`,
			bad + `:5:12: rules[1].port: port 70000 is out of range 1-65535`,
			bad + `:7:1: bogus: unknown field`,
		}},
		{"a YAML syntax error names the line that is wrong, in words", []string{"check", "-c", misindented}, 2, nil,
			[]string{misindented + `:3:4: "via" is indented 3 spaces, which lines up with nothing above it`}},
		{"a tab in the indentation", []string{"check", "-c", tabbed}, 2, nil,
			[]string{tabbed + `:3:1: a tab in the indentation: YAML indents with spaces only`}},
		{"check a missing file", []string{"check", "-c", "/nonexistent/config.yaml"}, 2, nil, []string{"/nonexistent/config.yaml"}},
		{"check without -c checks the embedded default", []string{"check"}, 0,
			[]string{"(embedded default): OK", "127.0.0.1:1080  mixed", "default:   ens33 (the NIC of the default route)"}, nil},
		{"check -q prints no summary", []string{"check", "-q", "-c", good}, 0, nil, nil},
		{"-i lo is refused as loopback", []string{"-i", "lo"}, 2, nil,
			[]string{"-i: lo is the loopback interface: nothing pinned to it leaves the host; name a NIC (have: ens33, ens160)"}},
		{"interfaces: {lo: {}} is refused the same way", []string{"check", "-c", loopbackFile}, 2, nil,
			[]string{loopbackFile + ":1:14: interfaces.lo: lo is the loopback interface", loopbackFile + ":2:10: default: lo is the loopback interface"}},
		{"a port in use is said once, with what to do", []string{"-l", busy.Addr().String(), "-i", "ens33"}, 1, nil,
			[]string{"listen tcp4 " + busy.Addr().String() + ": bind: address already in use: another process already listens there"}},
		{"check with an unknown flag", []string{"check", "-x"}, 2, nil, []string{"flag provided but not defined: -x"}},
		{"route by user", []string{"route", "-c", good, "-u", "alice", "198.51.100.7:443"}, 0,
			[]string{"rule      0 alice-wan", "via       ens160", "why       user alice"}, nil},
		{"route by suffix domain and port range, flags after DEST", []string{"route", "-c", good, "git.corp.example:8443", "-u", "bob"}, 0,
			[]string{"rule      1 corp", "via       ens160 -> ens33 (failover, in order)", "port 8443 in 443, 8000-8999", "domain git.corp.example in example.com, .corp.example"}, nil},
		{"route to a reject rule", []string{"route", "-c", good, "198.51.100.7:25"}, 0, []string{"rule      2 no-smtp", "action    reject"}, nil},
		{"route by IPv4 dst", []string{"route", "-c", good, "192.0.2.33:80"}, 0, []string{"rule      3 lan", "via       ens33", "address 192.0.2.33 in dst 192.0.2.0/24"}, nil},
		{"route to the default", []string{"route", "-c", good, "[2001:db8::1]:80"}, 0, []string{"rule      default", "via       ens160", "no rule matched"}, nil},
		{"route with the embedded default uses the default-route NIC", []string{"route", "198.51.100.7:80"}, 0, []string{"rule      default", "via       ens33"}, nil},
		{"route without -s, --listener or --udp", []string{"route", "-c", flags, "198.51.100.7:80"}, 0,
			[]string{"dest      198.51.100.7:80 (tcp)", "rule      default", "via       ens160"}, nil},
		{"route -s picks a src rule", []string{"route", "-c", flags, "-s", "10.1.2.3", "198.51.100.7:80"}, 0,
			[]string{"rule      0 lan-clients", "via       ens33", "why       client 10.1.2.3 in src 10.0.0.0/8"}, nil},
		{"route --listener picks a listener rule", []string{"route", "-c", flags, "--listener", "back", "198.51.100.7:80"}, 0,
			[]string{"rule      1 back-door", "via       ens33", "why       listener back"}, nil},
		{"route --udp picks a network rule", []string{"route", "-c", flags, "--udp", "198.51.100.7:80"}, 0,
			[]string{"dest      198.51.100.7:80 (udp)", "rule      2 udp-out", "why       network udp"}, nil},
		{"route --listener that does not exist", []string{"route", "-c", flags, "--listener", "nosuch", "198.51.100.7:80"}, 2, nil,
			[]string{`--listener: no listener named "nosuch"`}},
		{"route -s that is not an address", []string{"route", "-c", flags, "-s", "notanip", "198.51.100.7:80"}, 2, nil,
			[]string{`-s "notanip" is not an IP address`}},
		{"route with a bad port", []string{"route", "-c", good, "example.com:99999"}, 2, nil, []string{"port must be 1-65535"}},
		{"route without DEST", []string{"route", "-c", good}, 2, nil, []string{"want exactly one DEST[:PORT]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := nicproxy(t, lab, tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
				}
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
				}
			}
			if tt.wantStdout == nil && tt.wantCode == 0 && res.stdout != "" {
				t.Errorf("stdout should be empty:\n%s", res.stdout)
			}
			if strings.Count(res.stderr, "address already in use") > 1 {
				t.Errorf("the address is said more than once:\n%s", res.stderr)
			}
		})
	}
}

func TestHashPassword(t *testing.T) {
	lab := netlab.New(t)
	cmd := lab.Command(nicproxyBinary, "hash-password")
	cmd.Stdin = strings.NewReader("correct horse\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	hash := bytes.TrimSpace(out)
	if err := bcrypt.CompareHashAndPassword(hash, []byte("correct horse")); err != nil {
		t.Errorf("hash %q does not verify the password: %v", hash, err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte("correct horse\n")) == nil {
		t.Error("the newline became part of the password")
	}
	// The hash works in a config as it is printed.
	res := nicproxy(t, lab, "check", "-c", writeConfig(t, fmt.Sprintf("users: [{name: a, password_hash: %q}]\n", hash)))
	if res.code != 0 {
		t.Errorf("config with the printed hash: exit %d: %s", res.code, res.stderr)
	}
	empty := lab.Command(nicproxyBinary, "hash-password")
	empty.Stdin = strings.NewReader("\n")
	if err := empty.Run(); err == nil {
		t.Error("an empty password was hashed")
	}
}

// TestNICDown: a NIC the config pins to that is down is called down by
// `check` (in its summary and, with -q too, as a warning: the unit's
// ExecStartPre runs check -q) and by `route`, and warned about when serving
// starts; a NIC going up or down while serving is logged as it happens.
func TestNICDown(t *testing.T) {
	lab := netlab.New(t)
	path := writeConfig(t, "listen: [{addr: 127.0.0.1:1080}]\ndefault: [ens160, ens33]\n")
	lab.SetDown("ens160")
	const warning = "warning: NIC ens160 is down (administratively: ip link set ens160 up): connections pinned to it fail (or fail over) until it is up\n"

	res := nicproxy(t, lab, "check", "-c", path)
	if res.code != 0 || !strings.Contains(res.stdout, "ens160  down (administratively: ip link set ens160 up)") || !strings.Contains(res.stdout, "ens33   up") {
		t.Errorf("check with ens160 down: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res.stderr != warning {
		t.Errorf("check with ens160 down: stderr %q, want %q", res.stderr, warning)
	}
	if res := nicproxy(t, lab, "check", "-q", "-c", path); res.code != 0 || res.stdout != "" || res.stderr != warning {
		t.Errorf("check -q with ens160 down: exit %d, stdout %q, stderr %q; want 0, nothing, %q", res.code, res.stdout, res.stderr, warning)
	}
	const route = "dest      198.51.100.7:80 (tcp)\nrule      default\nvia       ens160 -> ens33 (failover, in order)\n" +
		"note      NIC ens160 is down (administratively: ip link set ens160 up): connections pinned to it fail (or fail over) until it is up\n" +
		"why       no rule matched\n"
	if res := nicproxy(t, lab, "route", "-c", path, "198.51.100.7:80"); res.code != 0 || res.stdout != route {
		t.Errorf("route with ens160 down: exit %d\n%s\nwant:\n%s", res.code, res.stdout, route)
	}

	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-c", path)
	want := `NIC is down (administratively: ip link set ens160 up): connections pinned to it fail (or fail over) until it is up	{"nic": "ens160"}`
	if out := proc.Output(); !strings.Contains(out, want) || strings.Contains(out, `{"nic": "ens33"}`) {
		t.Errorf("start-up log lacks the warning for ens160 alone:\n%s", out)
	}
	logged := func(line string) {
		t.Helper()
		eventually(t, 10*time.Second, func() bool { return strings.Contains(proc.Output(), line) },
			func() string { return fmt.Sprintf("the log lacks %q:\n%s", line, proc.Output()) })
	}
	lab.SetUp(netlab.Ens160)
	logged("\tINFO\tNIC is up again: connections pinned to it use it\t{\"nic\": \"ens160\"}\n")
	lab.SetDown("ens160")
	logged("\tWARN\tNIC went down (administratively: ip link set ens160 up): connections pinned to it fail (or fail over) until it is up\t{\"nic\": \"ens160\"}\n")
	if out := proc.Output(); strings.Count(out, "NIC is up again") != 1 || strings.Contains(out, `{"nic": "ens33"}`) {
		t.Errorf("want one line for ens160 coming up and none for ens33:\n%s", out)
	}
}

// TestExamplesOnAnotherHost: every file in configs/ passes `check` on a
// host that has none of its NICs: here a network namespace whose NIC,
// eth0 (a veth, as this kernel may lack dummy), carries the default route.
func TestExamplesOnAnotherHost(t *testing.T) {
	netlab.New(t) // for its skip rules: root and iproute2
	paths, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(paths) < 4 {
		t.Fatalf("configs: %v %v", paths, err)
	}
	setup := "ip link add eth0 type veth peer name peer0 && ip link set peer0 up && ip addr add 203.0.113.2/24 dev eth0 && ip link set eth0 up && ip route add default via 203.0.113.1"
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cmd := exec.Command("unshare", "-n", "sh", "-c", setup+` && exec "$0" check -c "$1"`, nicproxyBinary, p)
			cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), p+": OK") {
				t.Errorf("check on a host with only eth0: %v\n%s", err, out)
			}
		})
	}
}

// exitCode is the exit code of a command that returned err from Run: 0 for
// nil, -1 when it did not run or died of a signal.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	return -1
}

// TestHelp: the top-level usage lists `check -q`; every command's -h and
// --help print its help on stdout and exit 0, naming its positional
// arguments; unpinned dials are called "system" by route as by the log.
func TestHelp(t *testing.T) {
	lab := netlab.New(t)
	top := nicproxy(t, lab, "help")
	const checkLine = "  nicproxy check [-q] [-c FILE]           validate a config (default: the embedded one), print a summary\n"
	if top.code != 0 || !strings.Contains(top.stdout, checkLine) {
		t.Errorf("nicproxy help: exit %d, want 0 and the line %q:\n%s", top.code, checkLine, top.stdout)
	}
	heads := map[string]string{
		"run":           "Usage: nicproxy [run] [-c FILE] [-i NIC] [-l ADDR]\n",
		"check":         "Usage: nicproxy check [-q] [-c FILE]\n",
		"route":         "Usage: nicproxy route [-c FILE] [-u USER] [-s SRC] [--listener NAME] [--udp] [--from-pid PID | --unit NAME] DEST[:PORT]\n",
		"doctor":        "Usage: nicproxy doctor [-c FILE] [--target HOST:PORT]\n",
		"reload":        "Usage: nicproxy reload [-c FILE] PID\n",
		"hash-password": "Usage: nicproxy hash-password\n",
	}
	for cmd, head := range heads {
		for _, flag := range []string{"-h", "--help"} {
			res := nicproxy(t, lab, cmd, flag)
			if res.code != 0 || res.stderr != "" || !strings.HasPrefix(res.stdout, head) {
				t.Errorf("nicproxy %s %s: exit %d, stderr %q, stdout:\n%s\nwant exit 0, no stderr, stdout starting %q", cmd, flag, res.code, res.stderr, res.stdout, head)
			}
		}
	}
	const reloadHelp = `Usage: nicproxy reload [-c FILE] PID
         check the file PID serves, then tell nicproxy PID to re-read it

Arguments:
  PID  the process id of the serving nicproxy ($MAINPID in a systemd unit)

Flags:
  -c FILE
    	config FILE the running nicproxy reads (default: the -c it was started with)
`
	if res := nicproxy(t, lab, "reload", "-h"); res.stdout != reloadHelp {
		t.Errorf("reload -h:\n%s\nwant:\n%s", res.stdout, reloadHelp)
	}
	const destArg = "\nArguments:\n  DEST[:PORT]  the destination: a name, an IPv4 address or an IPv6 one ([2001:db8::1]:443 with a port)\n\nFlags:\n"
	if res := nicproxy(t, lab, "route", "-h"); !strings.Contains(res.stdout, destArg) {
		t.Errorf("route -h lacks %q:\n%s", destArg, res.stdout)
	}
	if res := nicproxy(t, lab, "route", "-x"); res.code != 2 || res.stdout != "" ||
		res.stderr != "nicproxy route: flag provided but not defined: -x (see: nicproxy route -h)\n" {
		t.Errorf("route -x: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	// One name for unpinned dials: "system", as in the access log's
	// "nic": "system" and in via: system.
	const loopback = "dest      127.0.0.1:8080 (tcp)\nrule      default\n" +
		"via       system (unpinned: a loopback destination never leaves the host)\nwhy       no rule matched\n"
	if res := nicproxy(t, lab, "route", "127.0.0.1:8080"); res.code != 0 || res.stdout != loopback {
		t.Errorf("route to loopback: exit %d\n%s\nwant:\n%s", res.code, res.stdout, loopback)
	}
	sys := writeConfig(t, "default: system\n")
	const unpinned = "dest      198.51.100.7:80 (tcp)\nrule      default\n" +
		"via       system (unpinned: the routing table decides)\nwhy       no rule matched\n"
	if res := nicproxy(t, lab, "route", "-c", sys, "198.51.100.7:80"); res.code != 0 || res.stdout != unpinned {
		t.Errorf("route via system: exit %d\n%s\nwant:\n%s", res.code, res.stdout, unpinned)
	}
}
