//go:build !linux

package cgroup

import "nicproxy/bind"

// Doctor says that exec needs Linux.
func Doctor() bind.NICReport {
	return bind.NICReport{NIC: "exec (pin in the kernel)", Findings: []bind.Finding{
		{Severity: bind.Warn, Check: "os", Detail: "exec needs Linux (cgroup v2 and BPF); use the proxy here"},
	}}
}
