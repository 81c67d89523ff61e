package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// actionResult is the contract between an action and the executor: one JSON object written
// to the container's termination message.
type actionResult struct {
	Success *bool           `json:"success"`
	Output  string          `json:"output"`
	Error   string          `json:"error"`
	Data    json.RawMessage `json:"data"`
}

// outcome is what an attempt's container told the executor.
type outcome struct {
	Success bool
	Output  string
	Error   string
	Data    *apiextensionsv1.JSON
}

// parseOutcome reads an attempt's outcome from its container's termination message and exit
// code. A message that is the result contract's JSON object is used as such; the action
// succeeded only if it exited 0 and did not report success=false. Any other message (a log
// tail, when the action wrote no result) becomes the output, and the exit code decides.
func parseOutcome(message string, exitCode int32) outcome {
	message = strings.TrimSpace(message)
	var res actionResult
	if strings.HasPrefix(message, "{") && json.Unmarshal([]byte(message), &res) == nil && isContract(message) {
		o := outcome{
			Success: exitCode == 0 && (res.Success == nil || *res.Success),
			Output:  res.Output,
			Error:   res.Error,
		}
		if d := bytes.TrimSpace(res.Data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
			o.Data = &apiextensionsv1.JSON{Raw: d}
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

// isContract reports whether a JSON object carries at least one field of the result contract,
// so that an action that merely logs JSON is not mistaken for one that reports a result.
func isContract(message string) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(message), &fields) != nil {
		return false
	}
	for _, k := range []string{"success", "output", "error", "data"} {
		if _, ok := fields[k]; ok {
			return true
		}
	}
	return false
}

func exitError(exitCode int32, fallback string) string {
	if exitCode != 0 {
		return fmt.Sprintf("the action exited with code %d", exitCode)
	}
	return fallback
}
