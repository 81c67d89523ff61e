//go:build !linux

package sdk

import "github.com/kubernaut/kubernaut-executor/api/v1alpha1"

// Usage returns nil: the action image runs on Linux, and other systems report getrusage's peak
// memory in other units, so the result carries no resourceUsage there.
func Usage() *v1alpha1.ResourceUsage { return nil }
