package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"nicproxy/test/netlab"
)

// TestHashPasswordOnATerminal runs `nicproxy hash-password` on a real
// pseudo-terminal, as a user at a shell does: it prompts, does not echo
// what is typed, asks again, and prints the hash; two different answers
// hash nothing; Ctrl-C at the prompt leaves the terminal echoing again.
func TestHashPasswordOnATerminal(t *testing.T) {
	lab := netlab.New(t)

	t.Run("prompts twice, echo off, prints the hash", func(t *testing.T) {
		s := startOnTerminal(t, lab)
		s.typeAtPrompt(t, "Password: ", "correct horse\n")
		s.typeAtPrompt(t, "Repeat it: ", "correct horse\n")
		screen, code, _ := s.wait(t)
		m := regexp.MustCompile(`^Password: \r\nRepeat it: \r\n(\$2a\$10\$[./A-Za-z0-9]{53})\r\n$`).FindSubmatch(screen)
		if code != 0 || m == nil {
			t.Fatalf("exit %d, the terminal showed %q; want exit 0 and the two prompts, then the hash", code, screen)
		}
		if err := bcrypt.CompareHashAndPassword(m[1], []byte("correct horse")); err != nil {
			t.Errorf("hash %q does not verify the password typed: %v", m[1], err)
		}
	})

	t.Run("two different answers", func(t *testing.T) {
		s := startOnTerminal(t, lab)
		s.typeAtPrompt(t, "Password: ", "correct horse\n")
		s.typeAtPrompt(t, "Repeat it: ", "battery staple\n")
		screen, code, _ := s.wait(t)
		const want = "Password: \r\nRepeat it: \r\nnicproxy hash-password: the two passwords differ; nothing hashed\r\n"
		if code != 2 || string(screen) != want {
			t.Errorf("exit %d, the terminal showed %q; want exit 2 and %q", code, screen, want)
		}
	})

	t.Run("Ctrl-C restores echo", func(t *testing.T) {
		s := startOnTerminal(t, lab)
		s.typeAtPrompt(t, "Password: ", "\x03")
		screen, code, echoing := s.wait(t)
		if code != 130 || string(screen) != "Password: \r\n" {
			t.Errorf("exit %d, the terminal showed %q; want exit 130 and %q", code, screen, "Password: \r\n")
		}
		if !echoing {
			t.Error("the terminal was left with echo off")
		}
	})
}

// terminalSession is one nicproxy hash-password whose stdin, stdout and
// stderr are a pseudo-terminal's.
type terminalSession struct {
	cmd    *exec.Cmd
	master *os.File
	tty    *os.File
	screen netlab.LockedBuffer // what the terminal showed so far
	closed chan struct{}       // the terminal's output ended
}

func startOnTerminal(t *testing.T, lab *netlab.Lab) *terminalSession {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close(); tty.Close() })
	cmd := lab.Command(nicproxyBinary, "hash-password")
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// Its own session with the terminal as its controlling one, so Ctrl-C
	// is a SIGINT to it, as in a shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &terminalSession{cmd: cmd, master: master, tty: tty, closed: make(chan struct{})}
	go func() {
		defer close(s.closed)
		_, _ = io.Copy(&s.screen, master) // EIO once the last holder of the tty closes it
	}()
	return s
}

// echoing reports whether the terminal echoes what is typed.
func (s *terminalSession) echoing(t *testing.T) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(s.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("read the terminal's settings: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// typeAtPrompt waits until the screen shows prompt and the terminal has
// stopped echoing (the prompt is reading), then types text.
func (s *terminalSession) typeAtPrompt(t *testing.T, prompt, text string) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return bytes.HasSuffix([]byte(s.screen.String()), []byte(prompt)) && !s.echoing(t) },
		func() string {
			return fmt.Sprintf("no prompt %q with echo off; the terminal shows %q", prompt, []byte(s.screen.String()))
		})
	if _, err := io.WriteString(s.master, text); err != nil {
		t.Fatal(err)
	}
}

// wait returns what the terminal showed, the exit status, and whether the
// terminal echoes once the process is gone.
func (s *terminalSession) wait(t *testing.T) (screen []byte, code int, echoing bool) {
	t.Helper()
	err := s.cmd.Wait()
	echoing = s.echoing(t)
	s.tty.Close() // the last holder: the reader sees the end
	select {
	case <-s.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	return []byte(s.screen.String()), exitCode(err), echoing
}
