package chaos_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// row is one scenario's result. The JSON keys are the report's contract (results.json, and the
// table in docs/reliability.md).
type row struct {
	// Scenario is the scenario's number in the list, Title what it does, Size its
	// workload and faults in this run.
	Scenario int    `json:"scenario"`
	Title    string `json:"title"`
	Size     string `json:"size"`
	// Executions counts the executions admitted; Terminal those that reached a terminal phase.
	Executions int `json:"executions"`
	Terminal   int `json:"terminal"`
	// Lost counts the executions that did not end as their action implies: not terminal, or
	// another phase or Ready reason, another number of attempts, an attempt that ended for
	// another reason (JobDeleted: its Job went before its outcome was read), or a result that
	// is not the action's own.
	Lost int `json:"lost"`
	// DuplicateAttempts counts the Jobs created (from the API server's audit log: a create
	// answered 201, or one answered 5xx that was stored nonetheless) beyond one per attempt the
	// status records: a name created twice, an attempt past those recorded or past the retry
	// budget, a Job for no admitted execution.
	DuplicateAttempts int `json:"duplicate_attempts"`
	// SkippedAttempts counts the attempts recorded whose Job was never created.
	SkippedAttempts int `json:"skipped_attempts"`
	// UnrevokedGrants counts the ServiceAccounts, Roles and bindings of the scenario's
	// executions left once they had all ended, or once they were deleted.
	UnrevokedGrants int `json:"unrevoked_grants"`
	// AuditMissing counts the executions for which the storage service stored no event, or one
	// that is not their outcome.
	AuditMissing int `json:"audit_missing"`
	// AuditDuplicatesStored counts the events stored beyond one per execution.
	AuditDuplicatesStored int `json:"audit_duplicates_stored"`
	// AuditDuplicatesReceived counts the resends the storage service refused as duplicates
	// (409): expected after a crash between delivery and release; not a violation. Those that
	// came within a second of the event's storing are Notes["audit_resends_within_1s"].
	AuditDuplicatesReceived int `json:"audit_duplicates_received"`
	// StuckFinalizers counts the executions still holding a finalizer at the end, or still
	// there a minute after being deleted.
	StuckFinalizers int `json:"stuck_finalizers"`
	// RecoverySeconds is the time from the fault's end to the last execution ended and
	// audited (from the stored completion and delivery times, whole seconds); 0 when all had
	// ended before the fault did, -1 when they never all did.
	RecoverySeconds float64 `json:"recovery_seconds"`
	// Seconds is the scenario's whole duration.
	Seconds float64 `json:"seconds"`
	// Notes are the scenario's own measurements and its fault timeline.
	Notes map[string]any `json:"notes,omitempty"`
	// Problems are the violations, one line each (the first 100).
	Problems []string `json:"problems,omitempty"`
	// Passed is true when no invariant is violated.
	Passed bool `json:"passed"`
}

// violations names the invariants the row breaks.
func (r *row) violations() []string {
	var out []string
	for _, v := range []struct {
		name string
		n    int
	}{
		{"lost", r.Lost}, {"duplicate_attempts", r.DuplicateAttempts}, {"skipped_attempts", r.SkippedAttempts},
		{"unrevoked_grants", r.UnrevokedGrants}, {"audit_missing", r.AuditMissing},
		{"audit_duplicates_stored", r.AuditDuplicatesStored}, {"stuck_finalizers", r.StuckFinalizers},
		{"not terminal", r.Executions - r.Terminal},
	} {
		if v.n != 0 {
			out = append(out, fmt.Sprintf("%s=%d", v.name, v.n))
		}
	}
	if len(r.Problems) > 0 && len(out) == 0 {
		out = append(out, fmt.Sprintf("%d other problems", len(r.Problems)))
	}
	return out
}

// report is the run's results.json.
type report struct {
	mu        sync.Mutex
	Mode      string    `json:"mode"`
	Seed      uint64    `json:"seed"`
	Started   time.Time `json:"started"`
	Command   string    `json:"command"`
	Scenarios []row     `json:"scenarios"`
	out       string
}

func newReport(st settings) *report {
	r := &report{Mode: "short", Seed: st.seed, Started: time.Now().UTC().Truncate(time.Second), out: st.out}
	r.Command = fmt.Sprintf("CHAOS_SEED=%d make test (the short version)", st.seed)
	if st.full {
		r.Mode = "full"
		r.Command = fmt.Sprintf("CHAOS_SEED=%d make chaos", st.seed)
	}
	return r
}

// add records a scenario's row and writes the file, so that an interrupted run keeps what it
// measured.
func (r *report) add(x row) {
	r.mu.Lock()
	r.Scenarios = append(r.Scenarios, x)
	sort.SliceStable(r.Scenarios, func(i, j int) bool { return r.Scenarios[i].Scenario < r.Scenarios[j].Scenario })
	r.mu.Unlock()
	if _, err := r.write(); err != nil {
		say("chaos: writing the results: %v", err)
	}
}

// write writes results.json into the output folder and returns its path.
func (r *report) write() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(r.out, "results.json")
	return path, os.WriteFile(path, append(b, '\n'), 0o600)
}

// print prints the table (as docs/reliability.md shows it).
func (r *report) print() {
	var b strings.Builder
	r.table(&b)
	say("%s", strings.TrimRight(b.String(), "\n"))
}

func (r *report) table(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = fmt.Fprintf(w, "chaos (%s, seed %d)\n", r.Mode, r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "scenario\texecutions\tterminal\tlost\tduplicate_attempts\tunrevoked_grants\taudit_missing\taudit_duplicates_stored\tstuck_finalizers\trecovery_seconds\tresult\t")
	for _, x := range r.Scenarios {
		result := "ok"
		if !x.Passed {
			result = "FAILED " + strings.Join(x.violations(), ",")
		}
		_, _ = fmt.Fprintf(tw, "%d %s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\t\n", x.Scenario, x.Title, x.Executions, x.Terminal,
			x.Lost, x.DuplicateAttempts, x.UnrevokedGrants, x.AuditMissing, x.AuditDuplicatesStored,
			x.StuckFinalizers, x.RecoverySeconds, result)
	}
	_ = tw.Flush()
}
