package sockdiag

import "nicproxy/bind/cgroup"

// FindMount returns where the cgroup v2 hierarchy is mounted (from
// /proc/self/mountinfo: /sys/fs/cgroup, a hybrid host's
// /sys/fs/cgroup/unified, or any other cgroup2 mount), "" when none is.
func FindMount() (string, error) { return cgroup.FindHierarchy() }
