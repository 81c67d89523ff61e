package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/managerproc"
)

// namespacesPerScenario spreads each workload over a few namespaces, as tenants' would be.
const namespacesPerScenario = 3

// run is one scenario in progress: its namespaces, its manager and what it has measured.
type run struct {
	row        row
	dir        string
	namespaces []string
	nsSet      map[string]bool
	rng        *rand.Rand
	args       []string
	m          *managerproc.Process
	started    time.Time
	// admitted are the executions the scenario's clients got admitted: the invariants are
	// checked for them.
	admitted []*planned
	// faultEnd is when the last fault ended (the manager serves again, the storage service
	// answers again): recovery is measured from it.
	faultEnd time.Time
	// duplicatesBefore is the storage service's duplicate count when the scenario started.
	duplicatesBefore int
	// grantsLeft are the grant objects seen after the executions ended or were deleted.
	grantsLeft map[types.UID]string
	finished   bool
	// accept, when set, accepts an end other than the one an execution's kind implies (scenario
	// 8: the target deleted before an attempt was due).
	accept func(p *planned, e *v1alpha1.KubernetesExecution) bool

	mu       sync.Mutex
	problems []string
	timeline []string
}

// pick returns short or full by the run's mode (read when the package starts: the specs'
// timeouts depend on it).
func pick[T any](short, full T) T {
	if fullMode {
		return full
	}
	return short
}

// newRun starts a scenario: its namespaces (chaos-<number>-<i>, each with the target
// ConfigMap), a random source of its own (from the run's seed and its number, so that a
// scenario's choices do not depend on the order the scenarios run in) and its manager, with the
// suite's flags and extra ones.
func newRun(ctx context.Context, number int, title, size string, extraArgs ...string) *run {
	r := newRunWithoutManager(ctx, number, title, size, extraArgs...)
	r.startManager(ctx)
	return r
}

// newRunWithoutManager is newRun for a scenario that starts its managers itself (scenario 2's
// replicas): r.m is nil until the scenario sets it, and r.args are the flags they run with.
func newRunWithoutManager(ctx context.Context, number int, title, size string, extraArgs ...string) *run {
	r := &run{
		row:        row{Scenario: number, Title: title, Size: size, Notes: map[string]any{}},
		dir:        filepath.Join(s.out, fmt.Sprintf("scenario-%d", number)),
		nsSet:      map[string]bool{},
		rng:        rand.New(rand.NewPCG(s.seed, uint64(number))), //nolint:gosec // a seeded schedule, replayable by design
		args:       s.managerArgs(extraArgs...),
		started:    time.Now(),
		grantsLeft: map[types.UID]string{},
		// Counted from here: a scenario's resends are its own.
		duplicatesBefore: s.receiver.State().Counters.Duplicates,
	}
	r.logf("%s: %s", title, size)
	for i := range namespacesPerScenario {
		ns := fmt.Sprintf("chaos-%d-%d", number, i)
		Expect(createNamespace(ctx, ns)).To(Succeed())
		r.namespaces = append(r.namespaces, ns)
		r.nsSet[ns] = true
	}
	DeferCleanup(func() {
		if r.finished {
			return
		}
		// The spec failed before its checks: stop its manager, and say so in the results.
		if r.m != nil {
			_ = r.m.Kill()
		}
		r.problem("the scenario did not reach its checks (see the spec's failure)")
		r.row.Problems, r.row.Seconds = r.problems, time.Since(r.started).Seconds()
		r.row.Notes["timeline"] = r.timeline
		s.results.add(r.row)
	})
	return r
}

// startManager starts the scenario's manager, with the scenario's flags.
func (r *run) startManager(ctx context.Context) {
	var err error
	r.m, err = managerproc.Start(ctx, s.cluster, managerproc.Options{Dir: r.dir, Args: r.args})
	Expect(err).NotTo(HaveOccurred())
	r.logf("manager running (pid %d, log %s)", r.m.Pid(), r.m.LogPath)
}

// kill SIGKILLs the manager, as a crash or an OOM kill would, and records the moment with the
// executions' state. A manager that had already exited by itself is a defect.
func (r *run) kill(ctx context.Context, what string) {
	if exited, err := r.m.Exited(); exited {
		r.problem("the manager (pid %d) had exited by itself before %s: %v", r.m.Pid(), what, err)
	}
	pid := r.m.Pid()
	Expect(r.m.Kill()).To(Succeed())
	r.event(ctx, "%s: manager pid %d SIGKILLed", what, pid)
}

// stop stops the manager with SIGTERM, as a rollout or a node drain would.
func (r *run) stop(ctx context.Context, what string) {
	if exited, err := r.m.Exited(); exited {
		r.problem("the manager (pid %d) had exited by itself before %s: %v", r.m.Pid(), what, err)
	}
	pid := r.m.Pid()
	if err := r.m.Stop(); err != nil {
		r.problem("the manager (pid %d) did not stop cleanly on SIGTERM: %v", pid, err)
	}
	r.event(ctx, "%s: manager pid %d stopped (SIGTERM)", what, pid)
}

// event records a moment of the fault timeline, with the state of the executions then.
func (r *run) event(ctx context.Context, format string, args ...any) {
	line := fmt.Sprintf("t+%.1fs %s", time.Since(r.started).Seconds(), fmt.Sprintf(format, args...))
	if execs, err := executions(ctx, r.namespaces); err == nil {
		line += " (" + phases(execs) + ")"
	}
	r.mu.Lock()
	r.timeline = append(r.timeline, line)
	r.mu.Unlock()
	r.logf("%s", line)
}

// phases summarises the executions' state: how many in each phase, and how many done.
func phases(execs map[string]*v1alpha1.KubernetesExecution) string {
	count := map[string]int{}
	finished := 0
	for _, e := range execs {
		p := string(e.Status.Phase)
		if p == "" {
			p = "New"
		}
		count[p]++
		if done(e) {
			finished++
		}
	}
	parts := make([]string, 0, len(count)+1)
	for p, n := range count {
		parts = append(parts, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d executions: %s; %d done", len(execs), strings.Join(parts, ", "), finished)
}

// waitJobs waits until at least n Jobs exist in the scenario's namespaces: attempts are running.
func (r *run) waitJobs(ctx context.Context, n int) {
	Eventually(func(g Gomega) {
		total := 0
		for _, ns := range r.namespaces {
			jobs := &batchv1.JobList{}
			g.Expect(s.k8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
			total += len(jobs.Items)
		}
		g.Expect(total).To(BeNumerically(">=", n))
	}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
}

// waitJobsFinished waits until every Job in the scenario's namespaces has finished (Complete or
// Failed; those of actions that never end fail at their active deadline), and returns how many
// there are; one that does not within timeout fails the spec.
func (r *run) waitJobsFinished(ctx context.Context, timeout time.Duration) int {
	var finished int
	Eventually(func(g Gomega) {
		finished = 0
		for _, ns := range r.namespaces {
			jobs := &batchv1.JobList{}
			g.Expect(s.k8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
			for _, j := range jobs.Items {
				g.Expect(jobFinished(&j)).To(BeTrue(), "Job %s/%s has not finished", ns, j.Name)
				finished++
			}
		}
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(time.Second).Should(Succeed())
	return finished
}

// jobFinished reports whether a Job has its Complete or Failed condition.
func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitDone waits until every admitted execution is done (terminal, no finalizer left), the
// manager exits by itself, or timeout passes; the checks then say what is missing. A failed
// list (the API server restarting) is tried again.
func (r *run) waitDone(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		if execs, err := executions(ctx, r.namespaces); err == nil {
			left := 0
			for _, p := range r.admitted {
				if e := execs[p.key()]; e == nil || !done(e) {
					left++
				}
			}
			if left == 0 {
				return
			}
			if time.Since(lastLog) >= 15*time.Second {
				r.logf("waiting for %d of %d executions (%s)", left, len(r.admitted), phases(execs))
				lastLog = time.Now()
			}
		}
		if exited, err := r.m.Exited(); exited {
			r.problem("the manager (pid %d) exited by itself: %v (see %s)", r.m.Pid(), err, r.m.LogPath)
			return
		}
		if time.Now().After(deadline) {
			r.logf("not every execution was done %s after the last fault", timeout)
			return
		}
		if ctx.Err() != nil {
			return
		}
		sleep(ctx, time.Second)
	}
}

// finish checks the invariants, deletes the executions, stops the manager, records the row and
// fails the spec when an invariant is violated.
func (r *run) finish(ctx context.Context) {
	r.checkInvariants(ctx)
	r.checkDeletion(ctx)
	if exited, err := r.m.Exited(); exited {
		r.problem("the manager (pid %d) exited by itself: %v (see %s)", r.m.Pid(), err, r.m.LogPath)
	} else if err := r.m.Stop(); err != nil {
		r.problem("the manager (pid %d) did not stop cleanly on SIGTERM: %v", r.m.Pid(), err)
	}
	r.finished = true
	r.row.Seconds = time.Since(r.started).Seconds()
	r.mu.Lock()
	r.row.Notes["timeline"] = r.timeline
	const keep = 100
	r.row.Problems = r.problems
	if len(r.problems) > keep {
		r.row.Problems = append(r.problems[:keep:keep], fmt.Sprintf("... and %d more", len(r.problems)-keep))
	}
	r.mu.Unlock()
	violations := r.row.violations()
	r.row.Passed = len(violations) == 0
	s.results.add(r.row)
	r.logf("executions %d, terminal %d, lost %d, duplicate attempts %d, skipped %d, unrevoked grants %d, audit missing %d, audit duplicates stored %d (received %d), stuck %d, recovery %.0fs",
		r.row.Executions, r.row.Terminal, r.row.Lost, r.row.DuplicateAttempts, r.row.SkippedAttempts, r.row.UnrevokedGrants,
		r.row.AuditMissing, r.row.AuditDuplicatesStored, r.row.AuditDuplicatesReceived, r.row.StuckFinalizers, r.row.RecoverySeconds)
	Expect(violations).To(BeEmpty(), "scenario %d (%s) broke invariants; the first problems:\n%s",
		r.row.Scenario, r.row.Title, strings.Join(r.row.Problems[:min(len(r.row.Problems), 20)], "\n"))
}

// problem records a violation.
func (r *run) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// must fails the spec on an error the checks cannot go on without.
func (r *run) must(err error) {
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
}

func (r *run) logf(format string, args ...any) {
	GinkgoWriter.Printf("%s scenario %d: %s\n", time.Now().Format("15:04:05"), r.row.Scenario, fmt.Sprintf(format, args...))
}

// uniform returns a duration drawn uniformly from [lo, hi].
func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}
