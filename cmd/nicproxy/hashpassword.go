package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// Prompts on a terminal; the hash alone goes to stdout.
const (
	promptPassword = "Password: "
	promptRepeat   = "Repeat it: "
)

// errMismatch is two different answers to the two prompts.
var errMismatch = errors.New("the two passwords differ; nothing hashed")

// hashPassword reads one password and prints its bcrypt hash, ready for
// password_hash in the config. On a terminal it asks on stderr, with echo
// off, and asks again to confirm; from a pipe it reads one line of stdin.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && isHelp(args[0]) {
		printHelp(stdout, "hash-password", nil)
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintln(stderr, "nicproxy hash-password: takes no arguments; it reads the password on stdin (see: nicproxy help)")
		return exitUsage
	}
	var password string
	var err error
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		password, err = askPassword(int(f.Fd()), stderr)
	} else {
		password, err = readPasswordLine(stdin)
	}
	switch {
	case errors.Is(err, errMismatch):
		fmt.Fprintf(stderr, "nicproxy hash-password: %v\n", err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "nicproxy hash-password: %v\n", err)
		return exitFailure
	case password == "":
		fmt.Fprintln(stderr, "nicproxy hash-password: empty password")
		return exitUsage
	case len(password) > 72:
		// bcrypt ignores everything past 72 bytes; say so rather than
		// silently accept a password that is partly unchecked.
		fmt.Fprintln(stderr, "nicproxy hash-password: password longer than 72 bytes (bcrypt's limit)")
		return exitUsage
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy hash-password: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}

// readPasswordLine reads the first line of a pipe or file.
func readPasswordLine(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// askPassword asks twice on the terminal fd, echo off. Ctrl-C (or a
// SIGTERM) while it waits restores the terminal's echo before exiting 130,
// which a process killed with echo off would leave off in the user's shell.
func askPassword(fd int, prompts io.Writer) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("read the terminal's settings: %w", err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	asked := make(chan struct{})
	restored := make(chan struct{})
	go func() {
		defer close(restored)
		select {
		case <-signals:
			_ = term.Restore(fd, state)
			fmt.Fprintln(prompts)
			os.Exit(130)
		case <-asked:
		}
	}()
	defer func() {
		signal.Stop(signals)
		close(asked)
		<-restored
	}()

	var answers [2][]byte
	for i, prompt := range []string{promptPassword, promptRepeat} {
		fmt.Fprint(prompts, prompt)
		answers[i], err = term.ReadPassword(fd)
		fmt.Fprintln(prompts) // the Enter the terminal did not echo
		if err != nil {
			return "", fmt.Errorf("read the password from the terminal: %w", err)
		}
		if i == 0 && len(answers[0]) == 0 {
			return "", nil // empty: no point asking again
		}
	}
	if !bytes.Equal(answers[0], answers[1]) {
		return "", errMismatch
	}
	return string(answers[0]), nil
}
