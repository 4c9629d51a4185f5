//go:build !linux

package bind

import "context"

func doctor(_ context.Context, opts DoctorOptions) []NICReport {
	var reports []NICReport
	for _, nic := range opts.NICs {
		reports = append(reports, NICReport{NIC: nic, Findings: []Finding{{Fail, "doctor", "doctor's checks are Linux-only"}}})
	}
	return reports
}
