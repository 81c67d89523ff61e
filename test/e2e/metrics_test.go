package e2e

import (
	"math"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// probeTemplate runs the test action, which succeeds or fails as its parameters say: the
// workload whose metrics are known in advance. Its name is the action label of every series the
// spec reads, so no other spec's execution is counted in them.
const probeTemplate = `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata: {name: metrics-probe}
spec:
  image: kubernaut-actions
  args: ["test-action"]
  targetKinds: [Deployment]
  parameters:
    type: object
    additionalProperties: false
    properties:
      sleepSeconds: {type: integer, minimum: 0, maximum: 60}
      failUntilAttempt: {type: integer, minimum: 0, maximum: 11}
      fail: {type: boolean}
  retryPolicy: {idempotent: true}
`

// The executor's metrics, as the endpoint serves them.
const (
	executionsTotal   = "kubernaut_executions_total"
	executionAttempts = "kubernaut_execution_attempts"
	executionDuration = "kubernaut_execution_duration_seconds"
	actionCPUSeconds  = "kubernaut_action_cpu_seconds"
	actionPeakMemory  = "kubernaut_action_peak_memory_bytes"
	rejectionsTotal   = "kubernaut_admission_rejections_total"
	executionsWaiting = "kubernaut_executions_waiting"
)

var _ = Describe("The manager's metrics endpoint", func() {
	It("counts ended executions by action and phase, their attempts and durations, and each cause of a rejection by reason, exactly", func(ctx SpecContext) {
		ns, err := cluster.Namespace(ctx, "metrics", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, newDeployment(ns, "web", "registry.invalid/web:1", 0))).To(Succeed())
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, probeTemplate, "apply", "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			tpl := &v1alpha1.ActionTemplate{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "metrics-probe"}, tpl)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())

		before, err := metrics.Scrape(ctx)
		Expect(err).NotTo(HaveOccurred())

		// The workload: two executions succeed at once, one on its second attempt, and one fails
		// both the attempts its maxRetries allows.
		workload := []struct {
			name, params, extra string
			phase               v1alpha1.ExecutionPhase
			attempts            int
		}{
			{"ok-1", `{}`, "", v1alpha1.PhaseCompleted, 1},
			{"ok-2", `{}`, "", v1alpha1.PhaseCompleted, 1},
			{"retried", `{failUntilAttempt: 2}`, "", v1alpha1.PhaseCompleted, 2},
			{"failed", `{fail: true}`, "  maxRetries: 1", v1alpha1.PhaseFailed, 2},
		}
		for _, w := range workload {
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, e2eutil.ExecutionManifest(ns, w.name, "metrics-probe", w.params, ns, "Deployment", "web", w.extra), "apply", "-f", "-")
			Expect(err).NotTo(HaveOccurred(), out)
		}
		// Two rejections: four causes, each counted by its field error's type.
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, e2eutil.ExecutionManifest(ns, "bad", "metrics-probe",
			`{sleepSeconds: -1, failUntilAttempt: 12, nope: true}`, ns, "Deployment", "web"), "apply", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("spec.action.parameters.sleepSeconds: Invalid value: -1"))
		Expect(out).To(ContainSubstring("spec.action.parameters.failUntilAttempt: Invalid value: 12"))
		Expect(out).To(ContainSubstring("spec.action.parameters.nope: Forbidden"))
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, e2eutil.ExecutionManifest(ns, "unknown", "no-such-action", `{}`, ns, "Deployment", "web"), "apply", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.type: Not found: "no-such-action"`))

		ended := map[string]*v1alpha1.KubernetesExecution{}
		for _, w := range workload {
			obj := &v1alpha1.KubernetesExecution{}
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: w.name}, obj)).To(Succeed())
				g.Expect(obj.Status.Phase.IsTerminal()).To(BeTrue(), "phase %s", obj.Status.Phase)
			}, 90*time.Second).Should(Succeed())
			Expect(obj.Status.Phase).To(Equal(w.phase), "%s: %+v", w.name, obj.Status.Result)
			Expect(obj.Status.Attempts).To(HaveLen(w.attempts), w.name)
			ended[w.name] = obj
		}

		// The counters change once the manager has written each final status, just after the
		// phase is visible; then they stay: an ended execution is counted once.
		completedLabels := e2eutil.Labels{"action": "metrics-probe", "phase": "Completed"}
		failedLabels := e2eutil.Labels{"action": "metrics-probe", "phase": "Failed"}
		var after e2eutil.Metrics
		counted := func(g Gomega) {
			var err error
			after, err = metrics.Scrape(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(after.Value(executionsTotal, completedLabels) - before.Value(executionsTotal, completedLabels)).To(BeEquivalentTo(3))
			g.Expect(after.Value(executionsTotal, failedLabels) - before.Value(executionsTotal, failedLabels)).To(BeEquivalentTo(1))
		}
		Eventually(counted).Should(Succeed())
		Consistently(counted, "2s").Should(Succeed())

		By("kubernaut_executions_total: a counter by action and phase, one per ended execution")
		Expect(after.Type(executionsTotal)).To(Equal("COUNTER"))
		Expect(after.LabelNames(executionsTotal)).To(Equal([][]string{{"action", "phase"}}))
		Expect(counterDeltas(before, after, executionsTotal)).To(Equal(map[string]float64{
			"action=metrics-probe,phase=Completed": 3,
			"action=metrics-probe,phase=Failed":    1,
		}), "nothing else ended meanwhile")

		By("kubernaut_execution_attempts: one observation per ended execution, in its attempts' bucket")
		Expect(after.Type(executionAttempts)).To(Equal("HISTOGRAM"))
		Expect(after.LabelNames(executionAttempts)).To(Equal([][]string{{"action", "phase"}}))
		inf := math.Inf(1)
		Expect(after.Histogram(executionAttempts, completedLabels).Sub(before.Histogram(executionAttempts, completedLabels))).To(Equal(e2eutil.Histogram{
			Count: 3, Sum: 4, Buckets: map[float64]uint64{1: 2, 2: 3, 3: 3, 4: 3, 6: 3, 11: 3, inf: 3},
		}))
		Expect(after.Histogram(executionAttempts, failedLabels).Sub(before.Histogram(executionAttempts, failedLabels))).To(Equal(e2eutil.Histogram{
			Count: 1, Sum: 2, Buckets: map[float64]uint64{1: 0, 2: 1, 3: 1, 4: 1, 6: 1, 11: 1, inf: 1},
		}))

		By("kubernaut_execution_duration_seconds: one observation per ended execution, start to end, in its bucket")
		Expect(after.Type(executionDuration)).To(Equal("HISTOGRAM"))
		Expect(after.LabelNames(executionDuration)).To(Equal([][]string{{"action", "phase"}}))
		expectDurations(after.Histogram(executionDuration, completedLabels).Sub(before.Histogram(executionDuration, completedLabels)),
			ended["ok-1"], ended["ok-2"], ended["retried"])
		expectDurations(after.Histogram(executionDuration, failedLabels).Sub(before.Histogram(executionDuration, failedLabels)), ended["failed"])

		By("kubernaut_action_cpu_seconds and kubernaut_action_peak_memory_bytes: the usage each final result reported")
		var reported uint64
		var cpu, memory float64
		for _, obj := range ended {
			Expect(obj.Status.Result).NotTo(BeNil(), obj.Name)
			if u := obj.Status.Result.ResourceUsage; u != nil {
				reported++
				cpu += float64(u.CPUMillis) / 1000
				memory += float64(u.PeakMemoryBytes)
			}
		}
		Expect(reported).To(BeEquivalentTo(len(ended)), "the action measures itself on the node agent")
		action := e2eutil.Labels{"action": "metrics-probe"}
		for name, sum := range map[string]float64{actionCPUSeconds: cpu, actionPeakMemory: memory} {
			Expect(after.Type(name)).To(Equal("HISTOGRAM"), name)
			Expect(after.LabelNames(name)).To(Equal([][]string{{"action"}}), name)
			d := after.Histogram(name, action).Sub(before.Histogram(name, action))
			Expect(d.Count).To(Equal(reported), name)
			Expect(d.Sum).To(BeNumerically("~", sum, 1e-6), name)
		}

		By("kubernaut_admission_rejections_total: one per field error, by resource and reason; nothing else")
		Expect(after.Type(rejectionsTotal)).To(Equal("COUNTER"))
		Expect(after.LabelNames(rejectionsTotal)).To(Equal([][]string{{"reason", "resource"}}))
		Expect(counterDeltas(before, after, rejectionsTotal)).To(Equal(map[string]float64{
			"reason=FieldValueInvalid,resource=kubernetesexecutions":   2,
			"reason=FieldValueForbidden,resource=kubernetesexecutions": 1,
			"reason=FieldValueNotFound,resource=kubernetesexecutions":  1,
		}))
	})
})

var _ = Describe("The manager's metrics endpoint, for executions that wait", func() {
	It("counts the executions the gate holds, by reason and action, and none once they run", func(ctx SpecContext) {
		ns, err := cluster.Namespace(ctx, "waiting", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, newDeployment(ns, "web", "registry.invalid/web:1", 0))).To(Succeed())
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, probeTemplate, "apply", "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		apply := func(name, params string) {
			GinkgoHelper()
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, e2eutil.ExecutionManifest(ns, name, "metrics-probe", params, ns, "Deployment", "web"), "apply", "-f", "-")
			Expect(err).NotTo(HaveOccurred(), out)
		}
		apply("holder", `{sleepSeconds: 20}`)
		Eventually(func() v1alpha1.ExecutionPhase {
			obj := &v1alpha1.KubernetesExecution{}
			_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "holder"}, obj)
			return obj.Status.Phase
		}, time.Minute).Should(Equal(v1alpha1.PhaseRunning))
		apply("waiter-1", `{}`)
		apply("waiter-2", `{}`)

		busy := e2eutil.Labels{"action": "metrics-probe", "reason": v1alpha1.ReasonTargetBusy}
		var scraped e2eutil.Metrics
		Eventually(func(g Gomega) float64 {
			scraped, err = metrics.Scrape(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			return scraped.Value(executionsWaiting, busy)
		}).Should(BeEquivalentTo(2))
		Expect(scraped.Type(executionsWaiting)).To(Equal("GAUGE"))
		Expect(scraped.LabelNames(executionsWaiting)).To(Equal([][]string{{"action", "reason"}}))

		// The holder ends; the two run one after the other, and nothing waits any more.
		Eventually(func(g Gomega) float64 {
			scraped, err = metrics.Scrape(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			return scraped.Value(executionsWaiting, busy)
		}, 2*time.Minute).Should(BeZero())
		// All three end here, so that no other spec's counters see them.
		for _, name := range []string{"holder", "waiter-1", "waiter-2"} {
			Eventually(func() v1alpha1.ExecutionPhase {
				obj := &v1alpha1.KubernetesExecution{}
				_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
				return obj.Status.Phase
			}, time.Minute).Should(Equal(v1alpha1.PhaseCompleted), name)
		}
	})
})

// expectDurations checks the observations a duration histogram gained (d) against the ended
// executions: one each, in the bucket of the time from its start to its end. The status keeps
// both times in whole seconds (RFC 3339); the manager observed its own end time, which is up to
// a second later than the stored one: each observation lies in [stored, stored+1).
func expectDurations(d e2eutil.Histogram, ended ...*v1alpha1.KubernetesExecution) {
	GinkgoHelper()
	Expect(d.Count).To(BeEquivalentTo(len(ended)))
	var low float64
	stored := make([]float64, 0, len(ended))
	for _, obj := range ended {
		Expect(obj.Status.StartTime).NotTo(BeNil(), obj.Name)
		Expect(obj.Status.CompletionTime).NotTo(BeNil(), obj.Name)
		s := obj.Status.CompletionTime.Sub(obj.Status.StartTime.Time).Seconds()
		stored = append(stored, s)
		low += s
	}
	Expect(d.Sum).To(And(BeNumerically(">=", low), BeNumerically("<", low+float64(len(ended)))), "the sum of the durations")
	Expect(d.Buckets).To(HaveKey(math.Inf(1)))
	for le, n := range d.Buckets {
		var surely, maybe uint64 // executions surely, and possibly, at or below le
		for _, s := range stored {
			if s+1 <= le {
				surely++
			}
			if s <= le {
				maybe++
			}
		}
		Expect(n).To(And(BeNumerically(">=", surely), BeNumerically("<=", maybe)), "bucket le=%v for stored durations %v", le, stored)
	}
}

// counterDeltas returns how much each series of the counter name grew between two scrapes, by
// its labels (name=value, sorted, comma-separated); series that did not change are left out.
func counterDeltas(before, after e2eutil.Metrics, name string) map[string]float64 {
	deltas := map[string]float64{}
	for _, s := range after[name].GetMetric() {
		labels := e2eutil.Labels{}
		var pairs []string
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
			pairs = append(pairs, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(pairs)
		if d := after.Value(name, labels) - before.Value(name, labels); d != 0 {
			deltas[strings.Join(pairs, ",")] = d
		}
	}
	return deltas
}
