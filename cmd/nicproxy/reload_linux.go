package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// readProcess reads pid's executable, command line and working directory
// from /proc. A process that is gone reads as os.ErrNotExist.
func readProcess(pid int) (process, error) {
	dir := fmt.Sprintf("/proc/%d/", pid)
	exe, err := os.Readlink(dir + "exe")
	if err != nil {
		_, statErr := os.Stat(dir)
		switch {
		case os.IsNotExist(statErr):
			return process{}, os.ErrNotExist
		case os.IsNotExist(err): // the process is there, its executable is not
			return process{exe: "a kernel thread"}, nil
		}
		return process{}, err
	}
	cmdline, err := os.ReadFile(dir + "cmdline")
	if err != nil {
		return process{}, err
	}
	cwd, err := os.Readlink(dir + "cwd")
	if err != nil {
		return process{}, err
	}
	var args []string
	for _, a := range bytes.Split(bytes.TrimSuffix(cmdline, []byte{0}), []byte{0}) {
		args = append(args, string(a))
	}
	return process{exe: strings.TrimSuffix(exe, " (deleted)"), args: args, cwd: cwd}, nil
}
