package test

import (
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestDoctorClientRules: doctor tells whether unit and cgroup rules can
// work on this host, in a mount namespace of the test's own: with no
// cgroup v2 mounted (v1 only), with cgroup2 beside v1 (hybrid), and with
// cgroup2 alone (unified); the exact sock_diag lookup works in each.
func TestDoctorClientRules(t *testing.T) {
	lab := netlab.New(t)
	dir := t.TempDir()
	// Unmount every cgroup2 (and, for "unified", every cgroup v1) mount
	// of the namespace, then mount cgroup2 where the case says.
	const umount = `umountfs() { for m in $(awk -v fs="$1" '$0 ~ " - "fs" " {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m" || exit 1; done; }; `
	tests := []struct {
		name, script, want string
	}{
		{"v1 only", `umountfs cgroup2`, "warn  cgroup2     no cgroup v2 hierarchy mounted (cgroup v1 only)"},
		// A named cgroup v1 hierarchy without controllers stands for a
		// hybrid host's v1 controllers.
		{"hybrid", `umountfs cgroup2 && mount -t cgroup -o none,name=nicproxy-test none "$3" && mount -t cgroup2 none "$0"`, "ok    cgroup2     hybrid: cgroup v2 at " + dir},
		{"unified", `umountfs cgroup2 && umountfs cgroup && mount -t cgroup2 none "$0"`, "ok    cgroup2     unified hierarchy at " + dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := lab.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
				umount+tt.script+` && exec "$1" doctor -c "$2"`, dir, nicproxyBinary, writeConfig(t, "default: ens160\n"), t.TempDir())
			out, _ := cmd.CombinedOutput()
			s := doctorSection(t, string(out), "client rules (unit, cgroup, uid, program)")
			if !strings.Contains(s, tt.want) || !strings.Contains(s, "ok    sock_diag   exact lookups work") {
				t.Errorf("doctor:\n%s\nwant %q and a working lookup", s, tt.want)
			}
		})
	}
}
