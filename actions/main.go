// Command kubernaut-actions is the project's action image: one binary, one subcommand per
// action, each an sdk.Func. The executor runs it in a Job with the execution's target and
// parameters in its environment; package sdk reads them, writes the result (a
// v1alpha1.ActionResult) to the termination message and exits v1alpha1.ExitSucceeded,
// v1alpha1.ExitRetryable (failed, a retry may help) or v1alpha1.ExitFinal (failed, do not
// retry).
package main

import "github.com/kubernaut/kubernaut-executor/actions/sdk"

// actions is the catalogue, by subcommand (or, with no argument, by ACTION_TYPE).
var actions = map[string]sdk.Func{
	"scale-deployment":    scaleDeployment,
	"restart-pod":         restartPod,
	"rollback-deployment": rollbackDeployment,
	"cordon-node":         cordonNode,
	"collect-logs":        collectLogs,
	"drain-node":          drainNode,
	"restart-deployment":  restartDeployment,
	"test-action":         testAction,
}

func main() { sdk.Main(sdk.ByName(actions)) }
