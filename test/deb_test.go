package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestDebianPackage builds the .deb, inspects it with dpkg-deb, and runs
// what it would install: the binary reports the package version, the
// shipped config checks on the two-NIC host, the unit verifies.
func TestDebianPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("skipping: dpkg-deb is not installed (not a Debian host)")
	}
	out := t.TempDir()
	build := exec.Command("../deploy/build-deb.sh")
	build.Env = append(os.Environ(), "OUT="+out, "VERSION=1.2.3~test")
	path, err := build.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v", err)
	}
	deb := strings.TrimSpace(string(path))

	info, err := exec.Command("dpkg-deb", "--info", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Package: nicproxy", "Version: 1.2.3~test", "conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/nicproxy", "./usr/lib/systemd/system/nicproxy.service", "./etc/nicproxy/config.yaml", "./usr/share/doc/nicproxy/README.md"} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("the package lacks %s", want)
		}
	}
	if first := strings.SplitN(string(contents), "\n", 2)[0]; !strings.HasPrefix(first, "drwxr-xr-x root/root") {
		t.Errorf("the package's root directory: %q, want drwxr-xr-x root/root", first)
	}

	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("extract: %v: %s", err, out)
	}
	bin := filepath.Join(root, "usr/bin/nicproxy")
	version, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(version), "nicproxy 1.2.3~test") {
		t.Errorf("packaged binary: %q, %v", version, err)
	}
	lab := netlab.New(t)
	check := lab.Command(bin, "check", "-c", filepath.Join(root, "etc/nicproxy/config.yaml"))
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "default:   ens33 (the NIC of the default route)") {
		t.Errorf("the shipped config on the two-NIC host: %v\n%s", err, out)
	}
}
