// Package result writes an action's outcome as the executor reads it: one JSON object
// (success, output, error, data) in the container's termination message.
package result

import (
	"encoding/json"
	"os"
	"unicode/utf8"
)

// Exit codes of the project's actions. The predefined templates mark ExitDoNotRetry as
// non-retryable.
const (
	// ExitSucceeded: the action did what it was asked.
	ExitSucceeded = 0
	// ExitRetryable: the action failed and a retry may succeed (a conflict, a PDB refusal).
	ExitRetryable = 1
	// ExitDoNotRetry: the action failed and a retry cannot help (bad input, target missing).
	ExitDoNotRetry = 2
)

// MaxMessageBytes is the kubelet's limit on a termination message.
const MaxMessageBytes = 4096

// TruncatedMarker ends an output that was cut to fit the termination message.
const TruncatedMarker = "\n…[output truncated to fit the 4 KiB termination message]"

// DefaultPath is where Kubernetes reads the termination message from; TERMINATION_MESSAGE_PATH
// overrides it (the local node agent gives each pod its own file).
const DefaultPath = "/dev/termination-log"

// Result is the contract.
type Result struct {
	Success bool   `json:"success"`
	Output  string `json:"output,omitempty"`
	Error   string `json:"error,omitempty"`
	Data    any    `json:"data,omitempty"`
}

// Encode returns r as JSON of at most MaxMessageBytes. When it does not fit, the output is cut
// (at a UTF-8 boundary) and marked; if the rest alone is too large, the data is dropped first;
// as a last resort the error is cut too. The result is always valid JSON.
func Encode(r Result) []byte {
	if b, err := json.Marshal(r); err == nil && len(b) <= MaxMessageBytes {
		return b
	} else if err != nil {
		r.Data = nil
		r.Error = joinErr(r.Error, "data could not be encoded: "+err.Error())
	}
	if b, ok := fitOutput(r); ok {
		return b
	}
	r.Data = nil
	if b, ok := fitOutput(r); ok {
		return b
	}
	r.Output = ""
	for len(r.Error) > 0 {
		r.Error = cut(r.Error, len(r.Error)-256) + "…"
		if b, err := json.Marshal(r); err == nil && len(b) <= MaxMessageBytes {
			return b
		}
	}
	b, _ := json.Marshal(Result{Success: r.Success, Error: "result too large"})
	return b
}

// fitOutput cuts r's output, marked, to the longest prefix with which r encodes within the
// limit (a binary search: escaping makes a byte of output cost one to six bytes of JSON); false
// if even an empty output does not fit.
func fitOutput(r Result) ([]byte, bool) {
	body := r.Output
	encode := func(n int) ([]byte, bool) {
		r.Output = ""
		if n > 0 {
			r.Output = cut(body, n) + TruncatedMarker
		}
		b, err := json.Marshal(r)
		return b, err == nil && len(b) <= MaxMessageBytes
	}
	if b, err := json.Marshal(r); err == nil && len(b) <= MaxMessageBytes {
		return b, true // the whole output fits
	}
	if _, ok := encode(0); !ok {
		return nil, false
	}
	lo, hi := 0, min(len(body), MaxMessageBytes)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, ok := encode(mid); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	b, _ := encode(lo)
	return b, true
}

// cut returns at most n bytes of s, ending on a rune boundary.
func cut(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Write writes r to the termination message path.
func Write(r Result) error {
	path := os.Getenv("TERMINATION_MESSAGE_PATH")
	if path == "" {
		path = DefaultPath
	}
	return os.WriteFile(path, Encode(r), 0o644)
}
