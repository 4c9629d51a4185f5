//go:build !linux

package main

import "errors"

// readProcess needs /proc, which only Linux has here.
func readProcess(int) (process, error) {
	return process{}, errors.New("reading a process's command line needs Linux's /proc; send SIGHUP yourself (kill -HUP PID)")
}
