package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestDebianPackage builds the .deb, inspects it with dpkg-deb, and runs
// what it would install: the binary reports the package version, the
// shipped config checks on the two-NIC host, the unit verifies.
func TestDebianPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		netlab.SkipOrFail(t, "dpkg-deb is not installed (not a Debian host)")
	}
	out := t.TempDir()
	build := exec.Command("../../deploy/build-deb.sh")
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
	for _, want := range []string{"Package: nicproxy", "Version: 1.2.3~test", "Recommends: iproute2", "conffiles", "postinst", "prerm", "postrm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/nicproxy", "./usr/lib/systemd/system/nicproxy.service", "./etc/nicproxy/config.yaml",
		"./usr/share/doc/nicproxy/README.Debian", "./usr/share/doc/nicproxy/copyright", "./usr/share/doc/nicproxy/changelog.gz",
		"./usr/share/man/man1/nicproxy.1.gz", "./usr/share/doc/nicproxy/examples/two-nic.yaml"} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("the package lacks %s", want)
		}
	}
	if strings.Contains(string(contents), "README.md") {
		t.Errorf("the package installs the repository's README, which speaks of ./nicproxy and configs/:\n%s", contents)
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
	t.Run("the files it names are the files it ships", func(t *testing.T) { namedFiles(t, root, string(contents)) })
	t.Run("lintian", func(t *testing.T) { lintian(t, deb) })
	t.Run("man page", func(t *testing.T) { manPage(t, root, bin) })
	t.Run("copyright and changelog", func(t *testing.T) {
		copyright, err := os.ReadFile(filepath.Join(root, "usr/share/doc/nicproxy/copyright"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
			"Files: *\nCopyright: 2026 The nicproxy authors\nLicense: Expat", " go.uber.org/zap v", ": Apache-2.0\n"} {
			if !strings.Contains(string(copyright), want) {
				t.Errorf("copyright lacks %q:\n%s", want, copyright)
			}
		}
		log, err := exec.Command("zcat", filepath.Join(root, "usr/share/doc/nicproxy/changelog.gz")).Output()
		if err != nil || !strings.HasPrefix(string(log), "nicproxy (1.2.3~test) unstable; urgency=medium\n") {
			t.Errorf("changelog: %v\n%s", err, log)
		}
	})

	lab := netlab.New(t)
	check := lab.Command(bin, "check", "-c", filepath.Join(root, "etc/nicproxy/config.yaml"))
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "default:   ens33 (the NIC of the default route)") {
		t.Errorf("the shipped config on the two-NIC host: %v\n%s", err, out)
	}
}

// lintian reports no error and no warning on the package. Its one
// override, with its reason, is in deploy/build-deb.sh.
func lintian(t *testing.T, deb string) {
	if _, err := exec.LookPath("lintian"); err != nil {
		netlab.SkipOrFail(t, "lintian is not installed")
	}
	cmd := exec.Command("lintian", "--fail-on", "error,warning", deb)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian:\n%s", out)
}

// manPage renders nicproxy(1) with man -l, as `man nicproxy` would once
// installed: no groff warning, and every command `nicproxy help` lists is
// in its synopsis, so the page cannot fall behind the binary.
func manPage(t *testing.T, root, bin string) {
	if _, err := exec.LookPath("man"); err != nil {
		netlab.SkipOrFail(t, "man is not installed (Debian: man-db)")
	}
	cmd := exec.Command("man", "--warnings", "-l", filepath.Join(root, "usr/share/man/man1/nicproxy.1.gz"))
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "LANG=C.UTF-8")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	page, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Errorf("man -l: %v\n%s", err, stderr.String())
	}
	text := string(page)
	words := strings.Join(strings.Fields(text), " ") // man justifies lines with extra spaces
	for _, want := range []string{"NICPROXY(1)", "NAME nicproxy - local SOCKS5, SOCKS4a and HTTP proxy that pins connections to a NIC SYNOPSIS",
		"EXIT STATUS", "/etc/nicproxy/config.yaml"} {
		if !strings.Contains(words, want) {
			t.Errorf("the rendered page lacks %q:\n%s", want, text)
		}
	}
	help, err := exec.Command(bin, "help").Output()
	if err != nil {
		t.Fatal(err)
	}
	synopsis, _, _ := strings.Cut(text, "DESCRIPTION")
	for _, line := range strings.Split(string(help), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nicproxy" || f[1][0] < 'a' || f[1][0] > 'z' {
			continue
		}
		if !strings.Contains(synopsis, "nicproxy "+f[1]) {
			t.Errorf("the synopsis lacks the command %q that nicproxy help lists:\n%s", f[1], synopsis)
		}
	}
}

// namedFiles: every path the shipped config and README.Debian point at is
// in the package, the config points at nothing of the source tree, and
// README.Debian's list names every file the package installs outside the
// documentation.
func namedFiles(t *testing.T, root, contents string) {
	path := regexp.MustCompile("/(?:usr|etc|lib)/[^\\s)`'\",;]+")
	for _, doc := range []string{"etc/nicproxy/config.yaml", "usr/share/doc/nicproxy/README.Debian"} {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range path.FindAllString(string(text), -1) {
			p = strings.TrimSuffix(p, ".")
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("/%s names %s, which the package does not ship", doc, p)
			}
		}
		if strings.Contains(string(text), "configs/") {
			t.Errorf("/%s names the source tree's configs/, which the package does not ship:\n%s", doc, text)
		}
	}
	readme, err := os.ReadFile(filepath.Join(root, "usr/share/doc/nicproxy/README.Debian"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(contents, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "-") {
			continue // directories and links
		}
		file := strings.TrimPrefix(f[5], ".")
		if strings.HasPrefix(file, "/usr/share/doc/") || strings.HasPrefix(file, "/usr/share/lintian/") {
			continue
		}
		if strings.HasPrefix(file, "/usr/share/man/") {
			file = "nicproxy(1)"
		}
		if !strings.Contains(string(readme), file) {
			t.Errorf("README.Debian's list of what the package installs lacks %s:\n%s", file, readme)
		}
	}
}

// TestReadmeInstallSteps: the install-by-hand steps (README.md's "Run it as
// a service", deploy/README.md) put in place everything the .deb would:
// the binary, the config, the man page, both units and the script the
// source-rule unit runs, from files that exist or that an earlier step
// builds.
func TestReadmeInstallSteps(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/nicproxy-source-rule@.service")
	if err != nil {
		t.Fatal(err)
	}
	script := regexp.MustCompile(`(?m)^ExecStart=(\S+)`).FindSubmatch(unit)
	if script == nil {
		t.Fatal("nicproxy-source-rule@.service has no ExecStart")
	}
	want := []string{"/usr/bin/nicproxy", "/etc/nicproxy/config.yaml", "/share/man/man1/nicproxy.1",
		"/etc/systemd/system/nicproxy.service", "/etc/systemd/system/nicproxy-source-rule@.service", string(script[1])}
	for _, doc := range []struct{ file, section string }{{"../../README.md", "## Run it as a service"}, {"../../deploy/README.md", ""}} {
		t.Run(strings.TrimPrefix(doc.file, "../../"), func(t *testing.T) {
			text, err := os.ReadFile(doc.file)
			if err != nil {
				t.Fatal(err)
			}
			steps := shellBlocks(string(text), doc.section)
			built := map[string]bool{}
			var installed []string
			for _, line := range strings.Split(steps, "\n") {
				line, _, _ = strings.Cut(line, "#")
				f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "sudo "))
				for i, w := range f {
					if (w == "-o" || w == "-out") && i+1 < len(f) {
						built[f[i+1]] = true
					}
				}
				if len(f) == 0 || f[0] != "install" {
					continue
				}
				var args []string
				for i := 1; i < len(f); i++ {
					switch {
					case f[i] == "-m":
						i++
					case strings.HasPrefix(f[i], "-"):
					default:
						args = append(args, f[i])
					}
				}
				if len(args) < 2 {
					continue // install -d DIR
				}
				dest := args[len(args)-1]
				for _, src := range args[:len(args)-1] {
					if _, err := os.Stat(filepath.Join("../..", src)); err != nil && !built[src] {
						t.Errorf("%q installs %s, which is neither in the tree nor built by an earlier step", line, src)
					}
					if strings.HasSuffix(dest, "/") {
						installed = append(installed, dest+filepath.Base(src))
					} else {
						installed = append(installed, dest)
					}
				}
			}
			for _, w := range want {
				if !slices.ContainsFunc(installed, func(p string) bool { return strings.HasSuffix(p, w) }) {
					t.Errorf("the steps install nothing as %s (they install %v):\n%s", w, installed, steps)
				}
			}
		})
	}
}

// shellBlocks is the text of every ```sh block of a Markdown text, or of
// its section that starts at the heading given, up to the next heading of
// that level.
func shellBlocks(text, heading string) string {
	if heading != "" {
		_, text, _ = strings.Cut(text, "\n"+heading+"\n")
		level, _, _ := strings.Cut(heading, " ")
		text, _, _ = strings.Cut(text, "\n"+level+" ")
	}
	var out strings.Builder
	for {
		_, rest, ok := strings.Cut(text, "```sh\n")
		if !ok {
			return out.String()
		}
		block, after, _ := strings.Cut(rest, "```")
		out.WriteString(block)
		text = after
	}
}
