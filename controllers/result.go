package controllers

import (
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// outcome is what an attempt's container told the executor.
type outcome struct {
	Success bool
	Output  string
	Error   string
	Data    *apiextensionsv1.JSON
	// ResourceUsage is what the action measured of itself; nil when it did not report it.
	ResourceUsage *v1alpha1.ResourceUsage
}

// parseOutcome reads an attempt's outcome from its container's termination message and exit
// code. A message that v1alpha1.ParseActionResult reads as a result is used as such; the action
// succeeded only if it exited 0 and did not report success=false. Any other message (a log
// tail, when the action wrote no result) becomes the output, and the exit code decides; such an
// outcome has no resource usage.
func parseOutcome(message string, exitCode int32) outcome {
	message = strings.TrimSpace(message)
	if res, ok := v1alpha1.ParseActionResult(message); ok {
		o := outcome{
			Success:       exitCode == 0 && (res.Success == nil || *res.Success),
			Output:        res.Output,
			Error:         res.Error,
			ResourceUsage: res.ResourceUsage,
		}
		if len(res.Data) > 0 {
			o.Data = &apiextensionsv1.JSON{Raw: res.Data}
		}
		if !o.Success && o.Error == "" {
			o.Error = exitError(exitCode, "the action reported success=false")
		}
		return o
	}
	o := outcome{Success: exitCode == 0, Output: message}
	if !o.Success {
		o.Error = exitError(exitCode, "")
	}
	return o
}

func exitError(exitCode int32, fallback string) string {
	if exitCode != 0 {
		return fmt.Sprintf("the action exited with code %d", exitCode)
	}
	return fallback
}
