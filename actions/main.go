// Command kubernaut-actions is the project's action image: one binary, one subcommand per
// action. The executor runs it in a Job with the execution's target and parameters in its
// environment; it writes its result (a v1alpha1.ActionResult) to the termination message and
// exits v1alpha1.ExitSucceeded, v1alpha1.ExitRetryable (failed, a retry may help) or
// v1alpha1.ExitFinal (failed, do not retry).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/kubernaut/kubernaut-executor/actions/internal/result"
	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// action runs one action and returns its result and exit code.
type action func(ctx context.Context, env Env) (v1alpha1.ActionResult, int)

// actions is the catalogue, by subcommand.
var actions = map[string]action{
	"scale-deployment":    scaleDeployment,
	"restart-pod":         restartPod,
	"rollback-deployment": rollbackDeployment,
	"cordon-node":         cordonNode,
	"collect-logs":        collectLogs,
	"drain-node":          drainNode,
	"restart-deployment":  restartDeployment,
	"test-action":         testAction,
}

func main() {
	name := os.Getenv(v1alpha1.EnvActionType)
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	run, ok := actions[name]
	if !ok {
		finish(failed(v1alpha1.ExitFinal, fmt.Sprintf("unknown action %q; known: %v", name, known()), nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	env, err := readEnv()
	if err != nil {
		finish(failed(v1alpha1.ExitFinal, err.Error(), nil))
	}
	res, code := run(ctx, env)
	stop()
	finish(res, code)
}

// finish writes the result, prints it for the log, and exits.
func finish(res v1alpha1.ActionResult, code int) {
	if res.Output != "" {
		fmt.Println(res.Output)
	}
	if res.Error != "" {
		fmt.Fprintln(os.Stderr, "error:", res.Error)
	}
	if err := result.Write(res); err != nil {
		fmt.Fprintln(os.Stderr, "writing the termination message:", err)
	}
	os.Exit(code)
}

func known() []string {
	names := make([]string, 0, len(actions))
	for n := range actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
