package audit

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxBodySnippet is the most of an answer's body a DeliveryError keeps.
const MaxBodySnippet = 512

// DeliveryError is why the storage service did not acknowledge an event. Every failure of
// Send is one, so the caller can tell a failure that retrying soon may cure from a defect.
type DeliveryError struct {
	// EventID is the event that was not acknowledged.
	EventID string
	// StatusCode is the HTTP status the storage service answered; 0 when it did not answer.
	StatusCode int
	// Defect is true when retrying soon cannot help: the storage service refused the event
	// (a 4xx other than 408 and 429, or a redirect), or the sender cannot build its request
	// (an unreadable token file). A defect is surfaced and retried slowly, never dropped.
	// Otherwise the failure is retryable: no answer (a network error or a timeout), 408, 429
	// or 5xx.
	Defect bool
	// Body is the start of the answer's body, at most MaxBodySnippet bytes.
	Body string
	// Err is the underlying error when there was no answer, or the sender failed.
	Err error
}

// Error says which event failed and why, with the answer's status and body when there was one.
func (e *DeliveryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "audit event %s not acknowledged", e.EventID)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": storage service answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Body != "" {
			fmt.Fprintf(&b, ": %q", e.Body)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Retryable reports whether retrying soon may succeed: the opposite of Defect.
func (e *DeliveryError) Retryable() bool { return !e.Defect }

// IsDefect reports whether err is a DeliveryError that is a defect.
func IsDefect(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Defect
}

// Classify says what an HTTP status means for an event: acknowledged (2xx, or 409 for an
// event the storage service already holds), or not, and then whether it is a defect (any
// other status below 500 except 408 Request Timeout and 429 Too Many Requests) or retryable.
func Classify(status int) (acknowledged, defect bool) {
	switch {
	case status >= 200 && status < 300, status == http.StatusConflict:
		return true, false
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return false, false
	default:
		return false, true
	}
}

// snippet returns the start of body, at most MaxBodySnippet bytes of valid UTF-8, trimmed.
func snippet(body []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
	if len(s) <= MaxBodySnippet {
		return s
	}
	cut := MaxBodySnippet
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// isRuneStart reports whether b starts a UTF-8 sequence.
func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
