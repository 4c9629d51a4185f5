package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// hashPassword reads one password line from stdin and prints its bcrypt
// hash, ready for password_hash in the config.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && isHelp(args[0]) {
		printHelp(stdout, "hash-password", nil)
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintln(stderr, "nicproxy hash-password: takes no arguments; it reads the password on stdin (see: nicproxy help)")
		return exitUsage
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "nicproxy hash-password: read stdin: %v\n", err)
		return exitFailure
	}
	password := strings.TrimRight(line, "\r\n")
	switch {
	case password == "":
		fmt.Fprintln(stderr, "nicproxy hash-password: empty password on stdin")
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
