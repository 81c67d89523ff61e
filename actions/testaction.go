package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kubernaut/kubernaut-executor/actions/internal/result"
)

// testActionParams drive test-action, the action the executor's own tests run.
type testActionParams struct {
	// Output is printed and returned as the result's output.
	Output string `json:"output"`
	// SleepSeconds waits before finishing (a SIGTERM ends the wait).
	SleepSeconds int `json:"sleepSeconds"`
	// FailUntilAttempt fails every attempt numbered below it.
	FailUntilAttempt int `json:"failUntilAttempt"`
	// Fail fails every attempt.
	Fail bool `json:"fail"`
	// ExitCode is the exit code of a failure (default 1).
	ExitCode int `json:"exitCode"`
	// NoResult writes no result, so the executor falls back to the exit code and the log.
	NoResult bool `json:"noResult"`
}

// testAction succeeds, fails, sleeps and prints as its parameters say.
func testAction(ctx context.Context, env Env) (result.Result, int) {
	var p testActionParams
	if err := env.decode(&p); err != nil {
		return result.Result{Error: err.Error()}, result.ExitDoNotRetry
	}
	if p.SleepSeconds > 0 {
		select {
		case <-time.After(time.Duration(p.SleepSeconds) * time.Second):
		case <-ctx.Done():
			return result.Result{Error: "stopped by a signal while sleeping"}, result.ExitRetryable
		}
	}
	data := map[string]any{"attempt": env.Attempt, "target": env.Namespace + "/" + env.Name, "dryRun": env.DryRun}
	res, code := result.Result{Success: true, Output: p.Output, Data: data}, result.ExitSucceeded
	if p.Fail || env.Attempt < p.FailUntilAttempt {
		code = p.ExitCode
		if code == 0 {
			code = result.ExitRetryable
		}
		res = result.Result{Output: p.Output, Error: fmt.Sprintf("test-action failed on attempt %d as asked", env.Attempt), Data: data}
	}
	if p.NoResult {
		fmt.Println(p.Output)
		os.Exit(code)
	}
	return res, code
}
