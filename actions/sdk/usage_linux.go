package sdk

import (
	"syscall"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Usage measures what this process and its children have consumed so far: the CPU time, user
// and system, of the process and of the children it waited for, and the larger of the process's
// peak resident set and its largest child's. Nil when the kernel does not answer.
func Usage() *v1alpha1.ResourceUsage {
	var self, children syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children) != nil {
		return nil
	}
	cpu := self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano()
	// Linux reports Maxrss in KiB.
	peak := int64(max(self.Maxrss, children.Maxrss)) * 1024
	return &v1alpha1.ResourceUsage{CPUMillis: cpu / 1e6, PeakMemoryBytes: peak}
}
