package chaos_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
)

const (
	// templateName is the suite's action: it does nothing, and kwok ends its pod as its first
	// argument, the outcome parameter, says (test/localcluster/kwok/pod-finish.yaml).
	templateName = "chaos-noop"
	// onceTemplateName is the same action declared not idempotent: it never runs twice.
	onceTemplateName = "chaos-once"
	// targetName is the ConfigMap every execution targets, one in each namespace.
	targetName = "chaos-target"
	// kwokOutput and kwokError are what kwok writes as a finished pod's termination message:
	// an execution whose result says anything else did not record its action's real outcome.
	kwokOutput = "simulated by kwok"
	kwokError  = "simulated failure"
	// hangTimeout is the timeout of the executions whose action never ends.
	hangTimeout = 10 * time.Second
)

// templateManifest is the suite's ActionTemplates: an idempotent one and one that is not. Their
// default timeout is long, so that only the executions meant to time out do, however long a
// scenario keeps the manager down.
var templateManifest = templateYAML(templateName, true) + "---" + templateYAML(onceTemplateName, false)

func templateYAML(name string, idempotent bool) string {
	return `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata:
  name: ` + name + `
spec:
  description: Does nothing. In the fault suite, kwok ends its pod with the outcome its first argument names.
  # It changes nothing, so the executions of one namespace, which share a target, run side by side.
  mutating: false
  image: kubernaut-actions
  args: ["{{ .Parameters.outcome }}"]
  targetKinds: [ConfigMap]
  parameters: {"type":"object","additionalProperties":false,"properties":{"outcome":{"type":"string","enum":["ok","fail","fail-twice","hang","slow","exit-2"],"default":"ok"}}}
  rbac:
    scope: Namespaced
    rules:
      - apiGroups: [""]
        resources: [configmaps]
        verbs: [get]
  defaultTimeout: 20m
  maxTimeout: 30m
  retryPolicy:
    idempotent: ` + fmt.Sprint(idempotent) + `
    nonRetryableExitCodes: [2]
    maxRetries: 3
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 64Mi}
`
}

// ceilingFragment lets the suite's template grant what it asks for (read one ConfigMap).
const ceilingFragment = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kubernaut-chaos-ceiling
  labels:
    kubernaut.io/aggregate-to-ceiling: "true"
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get]
`

// kind is one sort of execution in the mixed workload, and the outcome its action implies.
type kind struct {
	// name is part of the executions' names.
	name string
	// outcome is the action's first argument: how kwok ends each attempt's pod.
	outcome    string
	maxRetries int32
	timeout    time.Duration
	dryRun     bool
	// phase, readyReason and reasons are the end the action implies: the terminal phase, the
	// Ready condition's reason, and each attempt's reason in order (so their number too).
	phase       v1alpha1.ExecutionPhase
	readyReason string
	reasons     [][]string
	// template is the action, templateName when empty.
	template string
	// resultError is what a failed execution's result error contains, kwokError when empty.
	resultError string
	// lose is how scenario 6 takes the first attempt's pod away while it runs: "evict",
	// "delete", or "" to leave it alone.
	lose string
}

var (
	succeeded = []string{v1alpha1.ReasonSucceeded}
	failed    = []string{v1alpha1.ReasonActionFailed}
	// stopped is how an attempt that never ends is stopped: by the executor at the timeout, or
	// by the Job's active deadline, whichever comes first.
	stopped = []string{v1alpha1.ReasonTimedOut, v1alpha1.ReasonDeadlineExceeded}
)

// kinds are the workload's sorts of executions (the mix): succeeds; fails twice then
// succeeds on its last allowed attempt; always fails and runs out of retries; never ends and
// times out; a dry run that succeeds.
var kinds = []*kind{
	{name: "ok", outcome: "ok", maxRetries: 3, phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{succeeded}},
	{name: "twice", outcome: "fail-twice", maxRetries: 2, phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{failed, failed, succeeded}},
	{name: "fail", outcome: "fail", maxRetries: 1, phase: v1alpha1.PhaseFailed, readyReason: v1alpha1.ReasonMaxRetriesExceeded,
		reasons: [][]string{failed, failed}},
	{name: "hang", outcome: "hang", maxRetries: 3, timeout: hangTimeout, phase: v1alpha1.PhaseTimedOut, readyReason: v1alpha1.ReasonTimedOut,
		reasons: [][]string{stopped}},
	{name: "dry", outcome: "ok", maxRetries: 3, dryRun: true, phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{succeeded}},
}

// disrupted are scenario 6's kinds: actions that take 10 seconds, their first pod evicted (the
// pod gets the DisruptionTarget condition, as in a drain) or deleted (as kubectl delete pod does)
// while it runs, and one left alone. An idempotent action's evicted pod is replaced by the Job
// controller within its attempt; its deleted pod ends the attempt as PodDisrupted and the next
// attempt runs. An action that is not idempotent never runs again: the execution fails with the
// disruption as its reason.
var disrupted = []*kind{
	{name: "alone", outcome: "slow", maxRetries: 3, phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{succeeded}},
	{name: "evicted", outcome: "slow", maxRetries: 3, lose: "evict", phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{succeeded}},
	{name: "deleted", outcome: "slow", maxRetries: 3, lose: "delete", phase: v1alpha1.PhaseCompleted, readyReason: v1alpha1.ReasonSucceeded,
		reasons: [][]string{{v1alpha1.ReasonPodDisrupted}, succeeded}},
	{name: "once-evicted", outcome: "slow", maxRetries: 3, lose: "evict", template: onceTemplateName, phase: v1alpha1.PhaseFailed,
		readyReason: v1alpha1.ReasonPodDisrupted, reasons: [][]string{{v1alpha1.ReasonPodDisrupted}}, resultError: "the action's pod was disrupted"},
	{name: "once-deleted", outcome: "slow", maxRetries: 3, lose: "delete", template: onceTemplateName, phase: v1alpha1.PhaseFailed,
		readyReason: v1alpha1.ReasonPodDisrupted, reasons: [][]string{{v1alpha1.ReasonPodDisrupted}}, resultError: "the action's pod was disrupted"},
}

// templateOf is the kind's action.
func (k *kind) templateOf() string {
	if k.template == "" {
		return templateName
	}
	return k.template
}

// mix is the share of each kind in a workload, by index in kinds, ten at a time: three that
// succeed, two that fail twice, two that fail, two dry runs, one that times out.
var mix = []int{0, 1, 0, 2, 4, 0, 3, 1, 4, 2}

// planned is one execution of a workload.
type planned struct {
	ns, name string
	kind     *kind
	// targetNS is the namespace of the target ConfigMap, ns when empty.
	targetNS string
}

func (p *planned) key() string { return p.ns + "/" + p.name }

// object is the execution to create.
func (p *planned) object() *v1alpha1.KubernetesExecution {
	e := &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type:       p.kind.templateOf(),
				Parameters: &apiextensionsv1.JSON{Raw: fmt.Appendf(nil, `{"outcome":%q}`, p.kind.outcome)},
				Target:     v1alpha1.TargetSpec{Namespace: cmp.Or(p.targetNS, p.ns), ResourceKind: "ConfigMap", ResourceName: targetName},
			},
			MaxRetries: ptr.To(p.kind.maxRetries),
			DryRun:     p.kind.dryRun,
		},
	}
	if p.kind.timeout > 0 {
		e.Spec.Timeout = &metav1.Duration{Duration: p.kind.timeout}
	}
	return e
}

// workload returns n executions named <prefix>-<kind>-<index>, spread over the namespaces, in an
// order shuffled by rng: the mixed workload.
func workload(prefix string, namespaces []string, n int, rng *rand.Rand) []*planned {
	return workloadOf(prefix, namespaces, n, rng, func(i int) *kind { return kinds[mix[i%len(mix)]] })
}

// workloadOf is workload with the kinds kindOf picks by index.
func workloadOf(prefix string, namespaces []string, n int, rng *rand.Rand, kindOf func(int) *kind) []*planned {
	out := make([]*planned, n)
	for i := range out {
		k := kindOf(i)
		out[i] = &planned{ns: namespaces[i%len(namespaces)], name: fmt.Sprintf("%s-%s-%04d", prefix, k.name, i), kind: k}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// verify says how an execution's end differs from the one its action implies ("" when it does
// not): the terminal phase and Ready reason, the number of attempts and each one's number, Job
// name and reason, and a result that is the action's own (the output or error kwok wrote),
// never one made up from a Job that went missing.
func (k *kind) verify(e *v1alpha1.KubernetesExecution) string {
	st := e.Status
	var bad []string
	if st.Phase != k.phase {
		bad = append(bad, fmt.Sprintf("phase %q, want %s", st.Phase, k.phase))
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); st.Phase.IsTerminal() && (c == nil || c.Reason != k.readyReason) {
		reason := "none"
		if c != nil {
			reason = c.Reason + ": " + c.Message
		}
		bad = append(bad, fmt.Sprintf("Ready reason %s, want %s", reason, k.readyReason))
	}
	if len(st.Attempts) != len(k.reasons) {
		bad = append(bad, fmt.Sprintf("%d attempts, want %d", len(st.Attempts), len(k.reasons)))
	}
	for i, a := range st.Attempts {
		number := int32(i + 1) //nolint:gosec // at most 11 attempts (the CRD's MaxItems)
		if a.Number != number || a.JobName != controllers.JobName(e.Name, number) {
			bad = append(bad, fmt.Sprintf("attempt %d recorded as number %d, Job %s", number, a.Number, a.JobName))
		}
		if i < len(k.reasons) && !contains(k.reasons[i], a.Reason) {
			bad = append(bad, fmt.Sprintf("attempt %d ended %s (%s), want %s", number, a.Reason, a.Message, strings.Join(k.reasons[i], " or ")))
		}
	}
	if st.Phase.IsTerminal() {
		switch r := st.Result; {
		case r == nil:
			bad = append(bad, "no result")
		case k.phase == v1alpha1.PhaseCompleted && (!r.Success || r.Output != kwokOutput):
			bad = append(bad, fmt.Sprintf("result success=%t output %q, want the action's %q", r.Success, r.Output, kwokOutput))
		case k.phase == v1alpha1.PhaseFailed && (r.Success || !strings.Contains(r.Error, k.wantError())):
			bad = append(bad, fmt.Sprintf("result success=%t error %q, want %q", r.Success, r.Error, k.wantError()))
		}
	}
	return strings.Join(bad, "; ")
}

// wantError is what a failed execution's result error contains.
func (k *kind) wantError() string {
	if k.resultError == "" {
		return kwokError
	}
	return k.resultError
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// creator creates executions through admission, as a client that retries would: a create the
// webhook cannot answer (the manager is down) is tried again every half second until it is
// admitted, or until the creator's context ends. A create that was admitted but whose answer
// was lost comes back AlreadyExists, which counts as admitted.
type creator struct {
	// refused counts the creates that failed and were tried again.
	refused atomic.Int64
	// created counts the executions admitted.
	created atomic.Int64

	mu       sync.Mutex
	admitted []*planned
	errs     []error
}

// create creates one execution, trying again until it is admitted or ctx ends.
func (c *creator) create(ctx context.Context, p *planned) {
	for {
		err := s.k8s.Create(ctx, p.object())
		if err == nil || apierrors.IsAlreadyExists(err) {
			c.created.Add(1)
			c.mu.Lock()
			c.admitted = append(c.admitted, p)
			c.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("%s was never admitted: %w", p.key(), err))
			c.mu.Unlock()
			return
		}
		c.refused.Add(1)
		sleep(ctx, 500*time.Millisecond)
	}
}

// atRate creates the executions open loop, one every 1/rate seconds each in its own goroutine
// (a slow or refused create does not hold up the next), and returns at once; wait waits for
// them all.
func (c *creator) atRate(ctx context.Context, items []*planned, rate float64) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for _, p := range items {
			wg.Go(func() { c.create(ctx, p) })
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	})
	return wg.Wait
}

// all creates the executions with workers clients at once and waits until every one is
// admitted (or ctx ends).
func (c *creator) all(ctx context.Context, items []*planned, workers int) {
	work := make(chan *planned)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				c.create(ctx, p)
			}
		})
	}
	for _, p := range items {
		work <- p
	}
	close(work)
	wg.Wait()
}

// result returns the executions admitted so far, and an error for each one never admitted.
func (c *creator) result() ([]*planned, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*planned(nil), c.admitted...), append([]error(nil), c.errs...)
}
