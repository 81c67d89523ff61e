package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
)

// memoryLimitShare is the part of the container's memory limit the Go runtime aims to stay
// under; the rest is left for what the runtime does not count (stacks of cgo threads, the
// binary's mapped pages) so that the container is not killed before the collector reacts.
const memoryLimitShare = 0.9

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the container's memory limit
// (its cgroup's), unless GOMEMLIMIT sets one. Without it the collector lets the heap grow to
// twice what is live before it runs, whatever the container's limit: a manager whose cache holds
// thousands of executions would be killed for memory it does not need. With it, the collector
// runs more often as the heap nears the limit and returns freed memory to the system.
func setMemoryLimit(log logr.Logger, cgroupRoot string) {
	if v, set := os.LookupEnv("GOMEMLIMIT"); set {
		log.Info("Go memory limit from GOMEMLIMIT", "limit", v)
		return
	}
	limit, ok := cgroupMemoryLimit(cgroupRoot)
	if !ok {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("Go memory limit set from the container's", "containerLimitBytes", limit, "limitBytes", soft)
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup under root (the cgroup file
// system as a container sees it): cgroup v2's memory.max, or v1's memory.limit_in_bytes. It
// reports false when there is none (v2 "max", or v1's page-rounded largest value).
func cgroupMemoryLimit(root string) (int64, bool) {
	for _, file := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, file)) //nolint:gosec // G304: the cgroup file system's own files, not input.
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
