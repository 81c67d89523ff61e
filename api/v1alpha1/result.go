package v1alpha1

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Exit codes of an action's container. Any non-zero code is a failure; a template's
// spec.retryPolicy.nonRetryableExitCodes lists the codes that end an execution without a retry.
const (
	// ExitSucceeded means the action did what it was asked.
	ExitSucceeded = 0
	// ExitRetryable means the action failed and a retry may succeed: a conflict, a refusal by a
	// disruption budget, a timeout.
	ExitRetryable = 1
	// ExitFinal means the action failed and a retry cannot help: bad input, a missing target, a
	// forbidden request. The predefined templates list it as non-retryable.
	ExitFinal = 2
)

// MaxResultBytes is the most an encoded ActionResult may take: the kubelet's limit on a
// container's termination message.
const MaxResultBytes = 4096

// TruncationMarker ends a text that TruncateUTF8 cut.
const TruncationMarker = "…[truncated]"

// ActionResult is what an action reports: one JSON object, encoded in at most MaxResultBytes,
// that it writes to its container's termination message. An action whose termination message
// is not such an object is judged by its exit code alone, and the message becomes its output.
// +kubebuilder:object:generate=false
type ActionResult struct {
	// success is false when the action failed. An action succeeded only if it exited 0 and did
	// not report false; nil leaves the verdict to the exit code.
	Success *bool `json:"success"`

	// output says what the action did, for people.
	Output string `json:"output,omitempty"`

	// error says why the action failed.
	Error string `json:"error,omitempty"`

	// data is structured detail, for example the target before and after.
	Data json.RawMessage `json:"data,omitempty"`

	// resourceUsage is what the action's process and its children consumed, measured by the
	// action itself when it wrote its result: {"cpuMillis": 120, "peakMemoryBytes": 31457280}.
	// Optional; when it is not two non-negative integers it is ignored and the rest of the
	// result stands.
	ResourceUsage *ResourceUsage `json:"resourceUsage,omitempty"`
}

// resultFields are the JSON names of ActionResult's fields.
var resultFields = []string{"success", "output", "error", "data", "resourceUsage"}

// ParseActionResult reads an ActionResult from a termination message. It reports false when
// the message is not a JSON object with at least one of the result's fields, such as a log tail
// or a line of an action's JSON log. Data that is null is returned as none, and so is a
// resourceUsage that is not two non-negative integers.
func ParseActionResult(message string) (ActionResult, bool) {
	message = strings.TrimSpace(message)
	if !strings.HasPrefix(message, "{") {
		return ActionResult{}, false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(message), &fields) != nil {
		return ActionResult{}, false
	}
	found := false
	for _, k := range resultFields {
		if _, ok := fields[k]; ok {
			found = true
			break
		}
	}
	// The resourceUsage, kept raw, shadows the result's own, so that usage which cannot be read
	// is dropped alone.
	var wire struct {
		ActionResult
		ResourceUsage json.RawMessage `json:"resourceUsage"`
	}
	if !found || json.Unmarshal([]byte(message), &wire) != nil {
		return ActionResult{}, false
	}
	res := wire.ActionResult
	res.ResourceUsage = parseResourceUsage(wire.ResourceUsage)
	if d := bytes.TrimSpace(res.Data); len(d) == 0 || bytes.Equal(d, []byte("null")) {
		res.Data = nil
	} else {
		res.Data = d
	}
	return res, true
}

// parseResourceUsage reads a result's resourceUsage: nil unless it is an object with both figures
// as non-negative integers.
func parseResourceUsage(raw json.RawMessage) *ResourceUsage {
	var u struct {
		CPUMillis       *int64 `json:"cpuMillis"`
		PeakMemoryBytes *int64 `json:"peakMemoryBytes"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &u) != nil || u.CPUMillis == nil || u.PeakMemoryBytes == nil ||
		*u.CPUMillis < 0 || *u.PeakMemoryBytes < 0 {
		return nil
	}
	return &ResourceUsage{CPUMillis: *u.CPUMillis, PeakMemoryBytes: *u.PeakMemoryBytes}
}

// TruncateUTF8 returns s cut to at most maxBytes bytes of valid UTF-8. A valid s that fits is
// returned unchanged. Otherwise each invalid byte sequence is replaced by U+FFFD and, if s still
// does not fit, it is cut at a rune boundary and TruncationMarker appended; when maxBytes is
// too small for the marker, the result is as much of the marker as fits.
func TruncateUTF8(s string, maxBytes int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	if len(s) <= maxBytes {
		return s
	}
	if maxBytes < len(TruncationMarker) {
		return cutUTF8(TruncationMarker, maxBytes)
	}
	return cutUTF8(s, maxBytes-len(TruncationMarker)) + TruncationMarker
}

// cutUTF8 returns the longest prefix of the valid UTF-8 s that has at most n bytes.
func cutUTF8(s string, n int) string {
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
