package audit

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	p := DefaultBackoff
	tests := []struct {
		failures int
		defect   bool
		jitter   float64
		want     time.Duration
	}{
		{failures: 1, jitter: 0, want: 500 * time.Millisecond},
		{failures: 1, jitter: 0.5, want: 750 * time.Millisecond},
		{failures: 1, jitter: 0.999999, want: 999999500 * time.Nanosecond},
		{failures: 2, jitter: 0, want: time.Second},
		{failures: 4, jitter: 1, want: 8 * time.Second},
		{failures: 9, jitter: 0, want: 128 * time.Second},
		{failures: 10, jitter: 0, want: 150 * time.Second}, // capped at 5m, half of it
		{failures: 10, jitter: 1, want: 5 * time.Minute},   // capped
		{failures: 1000, jitter: 1, want: 5 * time.Minute}, // no overflow
		{failures: 0, jitter: 0, want: 500 * time.Millisecond},
		{failures: -3, jitter: 0, want: 500 * time.Millisecond},
		{failures: 1, jitter: -1, want: 500 * time.Millisecond}, // jitter clamped
		{failures: 1, jitter: 7, want: time.Second},             // jitter clamped
		{failures: 1, defect: true, jitter: 0, want: 270 * time.Second},
		{failures: 1, defect: true, jitter: 0.5, want: 5 * time.Minute},
		{failures: 50, defect: true, jitter: 1, want: 330 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("failures=%d defect=%t jitter=%g", tt.failures, tt.defect, tt.jitter), func(t *testing.T) {
			expect(t, "Delay", p.Delay(tt.failures, tt.defect, tt.jitter), tt.want)
		})
	}
}

func TestBackoffFollowsTheClassification(t *testing.T) {
	retryable := &DeliveryError{EventID: "e", StatusCode: http.StatusServiceUnavailable}
	defect := &DeliveryError{EventID: "e", StatusCode: http.StatusBadRequest, Defect: true}
	expect(t, "retryable", Backoff(3, retryable, 0), 2*time.Second)
	expect(t, "wrapped defect", Backoff(3, fmt.Errorf("auditing: %w", defect), 0.5), 5*time.Minute)
	expect(t, "other error", Backoff(1, errors.New("boom"), 0), 500*time.Millisecond)
}

func TestClassify(t *testing.T) {
	tests := []struct {
		status       int
		acknowledged bool
		defect       bool
	}{
		{200, true, false}, {201, true, false}, {202, true, false}, {204, true, false},
		{409, true, false},
		{408, false, false}, {429, false, false}, {500, false, false}, {502, false, false}, {503, false, false}, {504, false, false},
		{400, false, true}, {401, false, true}, {403, false, true}, {404, false, true}, {413, false, true}, {415, false, true}, {422, false, true},
		{301, false, true}, {307, false, true}, {100, false, true},
	}
	for _, tt := range tests {
		ack, defect := Classify(tt.status)
		if ack != tt.acknowledged || defect != tt.defect {
			t.Errorf("Classify(%d) = (%t, %t), want (%t, %t)", tt.status, ack, defect, tt.acknowledged, tt.defect)
		}
	}
}

func TestDeliveryErrorMessage(t *testing.T) {
	long := make([]byte, 2*MaxBodySnippet)
	for i := range long {
		long[i] = 'x'
	}
	err := &DeliveryError{EventID: "abc", StatusCode: 400, Defect: true, Body: snippet(append([]byte("  bad field\n"), long...))}
	msg := err.Error()
	if len(err.Body) > MaxBodySnippet+len("…") {
		t.Errorf("body snippet is %d bytes, want at most %d", len(err.Body), MaxBodySnippet)
	}
	want := `audit event abc not acknowledged: storage service answered 400 Bad Request: "bad field\n`
	if len(msg) < len(want) || msg[:len(want)] != want {
		t.Errorf("Error() = %s, want it to start with %s", msg, want)
	}
	cause := errors.New("connection refused")
	netErr := &DeliveryError{EventID: "abc", Err: cause}
	expect(t, "Error()", netErr.Error(), "audit event abc not acknowledged: connection refused")
	if !errors.Is(netErr, cause) || !netErr.Retryable() || IsDefect(netErr) {
		t.Error("a network error is not a retryable DeliveryError wrapping its cause")
	}
	expect(t, "snippet of invalid UTF-8", snippet([]byte{'a', 0xff, 'b'}), "a\uFFFDb")
}
