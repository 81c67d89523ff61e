package auditreceiver

import (
	"encoding/json"
	"fmt"
	"time"
)

// Fault modes.
const (
	// ModeOK answers normally.
	ModeOK = "ok"
	// ModeFail answers with the fault's status instead.
	ModeFail = "fail"
)

// Fault stages.
const (
	// StageBefore applies the fault before the event is stored: a failed answer means the event
	// was not stored. The default.
	StageBefore = "before"
	// StageAfter applies the fault after the event is stored: the acknowledgement is lost or
	// late, and a resend must be refused as a duplicate.
	StageAfter = "after"
)

// Fault is how the receiver misbehaves on event posts, set with POST /control. The zero value
// (or {"mode":"ok"}) answers normally.
type Fault struct {
	// Mode is ModeOK or ModeFail; ModeOK when empty.
	Mode string `json:"mode"`
	// Status is what ModeFail answers, 503 when zero; any status from 400 to 599.
	Status int `json:"status,omitempty"`
	// Delay holds the answer back this long, as a Go duration ("2s"), in either mode. A client
	// that goes away during the wait abandons its post (before storing: nothing is stored).
	Delay Duration `json:"delay,omitempty"`
	// Close closes the connection without answering, in either mode.
	Close bool `json:"close,omitempty"`
	// Stage says whether the fault applies before the event is stored (StageBefore, the
	// default) or after (StageAfter).
	Stage string `json:"stage,omitempty"`
	// Times is how many event posts the fault applies to before the receiver answers normally
	// again; 0 means until the next POST /control.
	Times int `json:"times,omitempty"`
}

// active reports whether f changes how a post is answered.
func (f Fault) active() bool {
	return f.Mode == ModeFail || f.Close || f.Delay > 0
}

// validate checks f and fills in its defaults.
func (f *Fault) validate() error {
	switch f.Mode {
	case "":
		f.Mode = ModeOK
	case ModeOK, ModeFail:
	default:
		return fmt.Errorf("mode %q: want %s or %s", f.Mode, ModeOK, ModeFail)
	}
	switch f.Stage {
	case "":
		f.Stage = StageBefore
	case StageBefore, StageAfter:
	default:
		return fmt.Errorf("stage %q: want %s or %s", f.Stage, StageBefore, StageAfter)
	}
	if f.Mode == ModeFail && f.Status == 0 {
		f.Status = 503
	}
	if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
		return fmt.Errorf("status %d: want 400 to 599", f.Status)
	}
	if f.Delay < 0 || f.Times < 0 {
		return fmt.Errorf("delay and times must not be negative")
	}
	return nil
}

// Counters count the event posts the receiver handled since it started.
type Counters struct {
	// Received counts every event post.
	Received int `json:"received"`
	// Stored counts events stored (answered 201, unless a fault after storing changed that).
	Stored int `json:"stored"`
	// Duplicates counts posts of an event already stored (answered 409).
	Duplicates int `json:"duplicates"`
	// Failed counts posts a fault answered with an error status or a closed connection.
	Failed int `json:"failed"`
	// Abandoned counts posts whose client went away during a delay.
	Abandoned int `json:"abandoned"`
	// Rejected counts malformed posts (answered 4xx): no id, a key that does not match the
	// id, a body that is not a JSON object, a wrong content type or token.
	Rejected int `json:"rejected"`
}

// State is what GET /control returns.
type State struct {
	// Fault is the fault in force.
	Fault Fault `json:"fault"`
	// Counters count the posts handled.
	Counters Counters `json:"counters"`
	// Events is how many events are stored, those read from the data file at start included.
	Events int `json:"events"`
}

// Duration is a time.Duration written in JSON as a Go duration string, for example "2s".
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("delay must be a duration string such as \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("delay: %w", err)
	}
	*d = Duration(v)
	return nil
}
