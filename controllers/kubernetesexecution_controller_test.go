package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

const testTemplate = "test-action"

// testActionSchema is the test action's parameter schema, strict as the shipped templates are.
const testActionSchema = `{"type":"object","additionalProperties":false,"properties":{
	"output":{"type":"string","default":"done"},
	"sleepSeconds":{"type":"integer","minimum":0,"maximum":3600},
	"failUntilAttempt":{"type":"integer","minimum":0},
	"fail":{"type":"boolean"},
	"exitCode":{"type":"integer","minimum":0,"maximum":255},
	"noResult":{"type":"boolean"},
	"apiCalls":{"type":"array"}}}`

// ensureTemplate installs an ActionTemplate that runs the project's test action, allowed to
// read and patch Deployments, and waits until it is ready.
func ensureTemplate(ctx context.Context, name, image string) *v1alpha1.ActionTemplate {
	return createTemplate(ctx, testActionTemplate(name, image))
}

// testActionTemplate is the ActionTemplate ensureTemplate installs, for specs that change it
// first.
func testActionTemplate(name, image string) *v1alpha1.ActionTemplate {
	return &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ActionTemplateSpec{
			Description: "Succeeds, fails, sleeps and prints as its parameters say.",
			Image:       image,
			Args:        []string{"test-action"},
			TargetKinds: []string{"Deployment", "Pod"},
			Parameters:  &apiextensionsv1.JSON{Raw: []byte(testActionSchema)},
			RetryPolicy: v1alpha1.RetryPolicy{NonRetryableExitCodes: []int32{2}},
			RBAC: v1alpha1.ActionRBAC{Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}},
			}},
		},
	}
}

// createTemplate creates tpl unless it exists, and waits until the controller has checked it.
func createTemplate(ctx context.Context, tpl *v1alpha1.ActionTemplate) *v1alpha1.ActionTemplate {
	err := k8s.Create(ctx, tpl)
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tpl), tpl)).To(Succeed())
		g.Expect(meta.FindStatusCondition(tpl.Status.Conditions, v1alpha1.ConditionReady)).NotTo(BeNil())
		g.Expect(tpl.Status.ObservedGeneration).To(Equal(tpl.Generation))
	}).Should(Succeed())
	return tpl
}

// newNamespace creates a namespace that enforces the restricted Pod Security Standard.
// newNamespace creates a namespace with the Deployment web, newExecution's target: an attempt
// starts only while its target exists.
func newNamespace(ctx context.Context) string {
	ns, err := cluster.Namespace(ctx, "kexec", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, deployment(ns, "web"))).To(Succeed())
	return ns
}

func newExecution(ns, name string, params string) *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type:       testTemplate,
				Parameters: &apiextensionsv1.JSON{Raw: []byte(params)},
				Target:     v1alpha1.TargetSpec{Namespace: ns, ResourceKind: "Deployment", ResourceName: "web"},
			},
		},
	}
}

func get(ctx context.Context, obj *v1alpha1.KubernetesExecution) func(Gomega) *v1alpha1.KubernetesExecution {
	return func(g Gomega) *v1alpha1.KubernetesExecution {
		out := &v1alpha1.KubernetesExecution{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), out)).To(Succeed())
		return out
	}
}

func phaseOf(ctx context.Context, obj *v1alpha1.KubernetesExecution) func() v1alpha1.ExecutionPhase {
	return func() v1alpha1.ExecutionPhase {
		out := &v1alpha1.KubernetesExecution{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), out); err != nil {
			return ""
		}
		return out.Status.Phase
	}
}

func jobsOf(ctx context.Context, ns string) []batchv1.Job {
	jobs := &batchv1.JobList{}
	Expect(k8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
	return jobs.Items
}

// poke changes an annotation, so the controller reconciles now rather than at its requeue.
func poke(ctx context.Context, obj *v1alpha1.KubernetesExecution) {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"test.kubernaut.io/poke":%q}}}`, time.Now().String()))
	Expect(k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
}

func readyCondition(obj *v1alpha1.KubernetesExecution) metav1.Condition {
	for _, c := range obj.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c
		}
	}
	return metav1.Condition{}
}

var _ = Describe("KubernetesExecution", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns = newNamespace(ctx)
	})

	It("runs the action as a Job under the restricted Pod Security Standard and records its result", func(ctx SpecContext) {
		// Its metrics are counted exactly, from the metrics endpoint, in test/e2e (metrics_test.go).
		obj := newExecution(ns, "succeed", `{"output":"scaled web to 3"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Result).NotTo(BeNil())
		Expect(got.Status.Result.Success).To(BeTrue())
		Expect(got.Status.Result.Output).To(Equal("scaled web to 3"))
		Expect(got.Status.Result.StartTime).NotTo(BeNil())
		Expect(got.Status.Result.EndTime).NotTo(BeNil())
		Expect(got.Status.Result.EndTime.Before(got.Status.Result.StartTime)).To(BeFalse())
		Expect(*got.Status.Result.ExitCode).To(BeEquivalentTo(0))
		var data map[string]any
		Expect(json.Unmarshal(got.Status.Result.Data.Raw, &data)).To(Succeed())
		Expect(data).To(HaveKeyWithValue("target", ns+"/web"))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonSucceeded))
		Expect(got.Status.RetryCount).To(BeEquivalentTo(0))
		Expect(got.Status.CompletionTime).NotTo(BeNil())
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		Expect(readyCondition(got).Status).To(Equal(metav1.ConditionTrue))
		for _, c := range got.Status.Conditions {
			Expect(c.Type).NotTo(BeElementOf(v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled), "a Completed execution carries no Reconciling or Stalled condition")
		}
		Expect(kstatusOf(got)).To(Equal(kstatus.CurrentStatus))

		jobs := jobsOf(ctx, ns)
		Expect(jobs).To(HaveLen(1))
		job := jobs[0]
		Expect(job.Name).To(Equal("succeed-1"))
		Expect(job.Labels).To(HaveKeyWithValue(v1alpha1.LabelExecution, "succeed"))
		Expect(job.Labels).To(HaveKeyWithValue(v1alpha1.LabelActionType, testTemplate))
		Expect(job.Labels).To(HaveKeyWithValue(v1alpha1.LabelAttempt, "1"))
		Expect(metav1.IsControlledBy(&job, got)).To(BeTrue())
		Expect(*job.Spec.BackoffLimit).To(BeEquivalentTo(0))
		Expect(job.Spec.ActiveDeadlineSeconds).NotTo(BeNil())
		Expect(job.Spec.Template.Spec.ServiceAccountName).To(Equal("kubernaut-exec-succeed"), "the execution's own ServiceAccount")

		// The pod ran in a namespace that enforces restricted: Pod Security admission passed it.
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{batchv1.JobNameLabel: job.Name})).To(Succeed())
		Expect(pods.Items).To(HaveLen(1))
		Expect(pods.Items[0].Status.Phase).To(Equal(corev1.PodSucceeded))
		// And the namespace does enforce it: a pod without the restricted settings is refused.
		bare := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bare"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: localClusterActionsImage}}},
		}
		err := k8s.Create(ctx, bare)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("violates PodSecurity \"restricted:latest\""))

		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range events.Items {
				if e.Regarding.Name == obj.Name {
					reasons = append(reasons, e.Reason)
				}
			}
			g.Expect(reasons).To(ContainElements(v1alpha1.ReasonProgressing, v1alpha1.ReasonSucceeded))
		}).Should(Succeed())
	})

	It("retries a failing action with exponential backoff, one new Job per attempt", func(ctx SpecContext) {
		obj := newExecution(ns, "flaky", `{"failUntilAttempt":3}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())

		for retry, delay := range []time.Duration{testBackoff.Base, 2 * testBackoff.Base} {
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
			got := get(ctx, obj)(Default)
			Expect(got.Status.Attempts).To(HaveLen(retry + 1))
			Expect(got.Status.NextRetryTime).NotTo(BeNil())
			// The wait is the configured delay for this retry, measured on the controller's clock.
			remaining := got.Status.NextRetryTime.Sub(testClock.Now())
			Expect(remaining).To(BeNumerically("<=", delay))
			Expect(remaining).To(BeNumerically(">", delay-5*time.Second))
			// No new Job before the backoff has passed.
			Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(retry + 1))
			testClock.Step(delay)
			poke(ctx, obj)
			Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(retry + 2))
		}

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		got := get(ctx, obj)(Default)
		Expect(got.Status.RetryCount).To(BeEquivalentTo(2))
		Expect(got.Status.Attempts).To(HaveLen(3))
		names := map[string]bool{}
		for i, a := range got.Status.Attempts {
			names[a.JobName] = true
			Expect(a.Number).To(BeEquivalentTo(i + 1))
			Expect(a.StartTime).NotTo(BeNil())
			Expect(a.EndTime).NotTo(BeNil())
			Expect(a.ExitCode).NotTo(BeNil())
		}
		Expect(names).To(HaveLen(3))
		Expect(*got.Status.Attempts[0].ExitCode).To(BeEquivalentTo(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonActionFailed))
		Expect(got.Status.Attempts[0].Message).To(ContainSubstring("failed on attempt 1"))
		Expect(*got.Status.Attempts[2].ExitCode).To(BeEquivalentTo(0))
		Expect(got.Status.Result.Success).To(BeTrue())
	})

	It("fails after maxRetries with exactly maxRetries+1 Jobs", func(ctx SpecContext) {
		obj := newExecution(ns, "always-fails", `{"fail":true}`)
		obj.Spec.MaxRetries = ptr.To[int32](2)
		Expect(k8s.Create(ctx, obj)).To(Succeed())

		for _, delay := range []time.Duration{testBackoff.Base, 2 * testBackoff.Base} {
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
			testClock.Step(delay)
			poke(ctx, obj)
			Eventually(phaseOf(ctx, obj)).ShouldNot(Equal(v1alpha1.PhaseRetrying))
		}
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		ready := readyCondition(got)
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonMaxRetriesExceeded))
		Expect(ready.Message).To(ContainSubstring("max retries exceeded"))
		Expect(got.Status.Result.Success).To(BeFalse())
		Expect(got.Status.Result.Error).To(ContainSubstring("max retries exceeded"))
		Expect(kstatusOf(got)).To(Equal(kstatus.FailedStatus))
		Expect(got.Status.Attempts).To(HaveLen(3))
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(3))
	})

	It("starts no attempt once the target is gone: deleted before a retry, the execution fails as TargetNotFound", func(ctx SpecContext) {
		obj := newExecution(ns, "orphaned", `{"fail":true}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
		Expect(k8s.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})).To(Succeed())
		stepToRetry(ctx, obj)

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		ready := readyCondition(got)
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonTargetNotFound))
		Expect(ready.Message).To(Equal("attempt 2 was not started: the target Deployment " + ns + "/web no longer exists"))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(1))
		// The grant goes with the execution's end, as always.
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.ExecutionServiceAccountName(obj.Name)}, &corev1.ServiceAccount{}))
		}).Should(BeTrue())
	})

	It("falls back to the exit code and the log tail when the action writes no result", func(ctx SpecContext) {
		obj := newExecution(ns, "no-result", `{"fail":true,"noResult":true,"output":"last words"}`)
		obj.Spec.MaxRetries = ptr.To[int32](0)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Result.Output).To(ContainSubstring("last words"))
		Expect(got.Status.Result.Error).To(HaveSuffix("last error: the action exited with code 1"))
		Expect(*got.Status.Result.ExitCode).To(BeEquivalentTo(1))
	})

	// An execution has two timeouts, each of which must hold alone: the executor's own deadline
	// (a requeue at the timeout), which also ends an execution between attempts, when no Job runs;
	// and the Job's active deadline, which the Job controller enforces while the manager is down.
	// Each of the three specs below fails when the mechanism it names is removed.

	It("times out a running attempt at the execution's deadline: deletes its Job and the process is gone", func(ctx SpecContext) {
		// The executor's deadline: the test clock passes the timeout while the Job's active
		// deadline is a minute of real time away, so the executor, not the Job controller, ends it.
		obj := newExecution(ns, "slow", `{"sleepSeconds":600}`)
		obj.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		pid := runningProcess(ns)
		Expect(phaseOf(ctx, obj)()).To(Equal(v1alpha1.PhaseRunning))

		testClock.Step(time.Minute)
		poke(ctx, obj)
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseTimedOut))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonTimedOut))
		Expect(readyCondition(got).Message).To(MatchRegexp(`^execution timed out after 1m\d+s$`))
		Expect(got.Status.Result.Error).To(Equal(readyCondition(got).Message))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonTimedOut), "stopped by the executor")
		Expect(got.Status.Attempts[0].Message).To(Equal("stopped at the execution's timeout"))
		Expect(got.Status.Attempts[0].EndTime).NotTo(BeNil())
		Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
		Eventually(func() error { return syscall.Kill(pid, 0) }).Should(MatchError(syscall.ESRCH), "the process is gone")
	})

	It("times out at its deadline while Retrying, when no Job runs, and starts no further attempt", func(ctx SpecContext) {
		// The executor's deadline, alone: between attempts no Job exists whose active deadline
		// could end the execution, and the backoff (30s) outlasts the timeout. Nothing pokes it:
		// its own requeue at the deadline must.
		const timeout = 8 * time.Second
		obj := newExecution(ns, "retrying-times-out", `{"fail":true}`)
		obj.Spec.Timeout = &metav1.Duration{Duration: timeout}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
		retrying := get(ctx, obj)(Default)
		Expect(retrying.Status.NextRetryTime.Time).To(BeTemporally(">", retrying.Status.StartTime.Add(timeout)),
			"the retry is due after the timeout")

		Eventually(phaseOf(ctx, obj), timeout+5*time.Second).Should(Equal(v1alpha1.PhaseTimedOut))
		got := get(ctx, obj)(Default)
		ranFor := got.Status.CompletionTime.Sub(got.Status.StartTime.Time)
		Expect(ranFor).To(BeNumerically(">=", timeout), "not before its deadline")
		Expect(ranFor).To(BeNumerically("<", timeout+5*time.Second), "at its deadline, not at its retry")
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonTimedOut))
		Expect(readyCondition(got).Message).To(MatchRegexp(`^execution timed out after \d+s$`))
		Expect(got.Status.NextRetryTime).To(BeNil())
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonActionFailed), "the attempt keeps its own outcome")

		// Past the time its retry was due, still no second attempt.
		testClock.Step(retrying.Status.NextRetryTime.Sub(testClock.Now()) + time.Second)
		poke(ctx, obj)
		Consistently(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "retrying-times-out-2"}, &batchv1.Job{}))
		}).Should(BeTrue(), "no Job for a second attempt")
		Expect(get(ctx, obj)(Default).Status.Attempts).To(HaveLen(1))
	})

	It("is stopped at its deadline by the Job controller while the manager is down, and recorded TimedOut once it is back", func(ctx SpecContext) {
		// The Job's active deadline, alone: no manager runs to enforce the executor's own.
		const timeout = 8 * time.Second
		obj := newExecution(ns, "deadline", `{"sleepSeconds":600}`)
		obj.Spec.Timeout = &metav1.Duration{Duration: timeout}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		pid := runningProcess(ns)
		stopManager()
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				startManager()
			}
		})
		Expect(phaseOf(ctx, obj)()).To(Equal(v1alpha1.PhaseRunning), "the manager stopped before the execution's deadline")

		var failed *batchv1.JobCondition
		Eventually(func(g Gomega) {
			job := &batchv1.Job{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "deadline-1"}, job)).To(Succeed())
			failed = jobCondition(job, batchv1.JobFailed)
			g.Expect(failed).NotTo(BeNil())
		}).Should(Succeed())
		Expect(failed.Reason).To(Equal(batchv1.JobReasonDeadlineExceeded))
		Eventually(func() error { return syscall.Kill(pid, 0) }).Should(MatchError(syscall.ESRCH), "the Job controller stopped the process")
		Expect(phaseOf(ctx, obj)()).To(Equal(v1alpha1.PhaseRunning), "nobody recorded anything meanwhile")

		startManager()
		restarted = true
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseTimedOut))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonTimedOut))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonDeadlineExceeded), "stopped by the Job controller")
		Expect(got.Status.Attempts[0].Message).To(Equal(failed.Message))
		Expect(got.Status.Result.Success).To(BeFalse())
	})

	It("fails an attempt whose image cannot be pulled, with the kubelet's reason", func(ctx SpecContext) {
		ensureTemplate(ctx, "unpullable", "registry.invalid/nope:1")
		obj := newExecution(ns, "unpullable", `{}`)
		obj.Spec.Action.Type = "unpullable"
		obj.Spec.MaxRetries = ptr.To[int32](0)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonImagePullFailed))
		Expect(got.Status.Attempts[0].Message).To(ContainSubstring("ErrImagePull"))
		Expect(got.Status.Attempts[0].Message).To(ContainSubstring("registry.invalid/nope:1"))
		Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
	})

	It("fails without a Job when the execution does not fit its template", func(ctx SpecContext) {
		obj := newExecution(ns, "wrong-kind", `{}`)
		obj.Spec.Action.Target.ResourceKind = "Node"
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonValidationFailed))
		Expect(readyCondition(got).Message).To(ContainSubstring(`spec.action.target.resourceKind: Unsupported value: "Node"`))

		badParams := newExecution(ns, "bad-params", `{"sleepSeconds":-5,"bogus":1}`)
		Expect(k8s.Create(ctx, badParams)).To(Succeed())
		Eventually(phaseOf(ctx, badParams)).Should(Equal(v1alpha1.PhaseFailed))
		msg := readyCondition(get(ctx, badParams)(Default)).Message
		Expect(msg).To(ContainSubstring("spec.action.parameters.sleepSeconds: Invalid value: -5: must be greater than or equal to 0"))
		Expect(msg).To(ContainSubstring("spec.action.parameters.bogus: Forbidden"))

		missing := newExecution(ns, "no-template", `{}`)
		missing.Spec.Action.Type = "does-not-exist"
		Expect(k8s.Create(ctx, missing)).To(Succeed())
		Eventually(phaseOf(ctx, missing)).Should(Equal(v1alpha1.PhaseFailed))
		Expect(readyCondition(get(ctx, missing)(Default)).Message).To(ContainSubstring("no ActionTemplate"))
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
	})

	It("creates an attempt's Job once, however many reconcilers race for it, and a pass on a stale copy adopts it", func(ctx SpecContext) {
		// Every Job created in the namespace from before the execution exists: a second creation
		// of the attempt's Job (after a delete, or under another name) is a second ADDED event.
		created := watchJobCreations(ctx, ns)
		obj := newExecution(ns, "raced", `{"sleepSeconds":600}`)
		// The grant finalizer is on it from the start, so that no pass stops at adding it (all but
		// one would be refused that write): every one goes straight for the attempt's Job.
		obj.Finalizers = []string{v1alpha1.GrantFinalizer}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		createdVersion := obj.ResourceVersion
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)}

		// Reconcilers without a cache, as a restarted manager's would be, racing the suite's
		// manager and each other from the same moment.
		const racers = 4
		var (
			start   = make(chan struct{})
			wg      sync.WaitGroup
			passes  [racers]*handPass
			results [racers]ctrl.Result
			errs    [racers]error
		)
		for i := range racers {
			passes[i] = &handPass{}
			r := passes[i].reconciler()
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				<-start
				results[i], errs[i] = r.Reconcile(ctx, req)
			}()
		}
		close(start)
		wg.Wait()
		var jobCreates []string
		for i := range racers {
			// A pass that loses the race for the Job is refused its create (AlreadyExists), and
			// adopts the Job; one that loses the race for the status is refused its write, and
			// leaves it to the newer copy's pass. Only a write refused for a stale copy (Conflict)
			// may reach controller-runtime, which retries it; nothing else may go wrong.
			if err := errs[i]; err != nil {
				Expect(err).To(Satisfy(apierrors.IsConflict), "racer %d", i)
				continue
			}
			Expect(results[i].RequeueAfter).To(BeNumerically("~", 5*time.Minute, 30*time.Second),
				"racer %d looks again at the execution's timeout (the template's default, 5m)", i)
			for _, w := range passes[i].writesOf("create", "Job") {
				jobCreates = append(jobCreates, fmt.Sprintf("racer %d: %v", i, w.Err))
			}
		}
		AddReportEntry("the racers' creates of the Job", jobCreates)

		// Exactly one Job was created, and the status records it.
		Eventually(created.jobs).Should(HaveLen(1))
		Consistently(created.jobs).Should(HaveLen(1))
		job := created.jobs()[0]
		Expect(job.Name).To(Equal("raced-1"))
		Eventually(func(g Gomega) {
			got := get(ctx, obj)(g)
			g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseRunning))
			g.Expect(got.Status.Attempts).To(Equal([]v1alpha1.Attempt{{Number: 1, JobName: "raced-1"}}))
		}).Should(Succeed())

		// A pass on a copy of the execution that predates the status recording the attempt (a
		// cache that has not seen that write yet) finds the Job with one read and records it: no
		// review, no grant, no create. Its status write is refused, the copy being stale.
		stale := get(ctx, obj)(Default)
		stale.ResourceVersion, stale.Status = createdVersion, v1alpha1.KubernetesExecutionStatus{}
		recorded := []v1alpha1.Attempt{{Number: 1, JobName: "raced-1"}}

		oneRead := &handPass{stale: stale}
		_, err := oneRead.reconciler().Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(oneRead.writes).To(BeEmpty(), "no review, no grant, no Job")
		Expect(oneRead.status).NotTo(BeNil(), "the pass recorded the attempt")
		Expect(oneRead.status.Attempts).To(Equal(recorded))
		Expect(oneRead.status.Phase).To(Equal(v1alpha1.PhaseRunning))
		Expect(oneRead.statusErr).To(Satisfy(apierrors.IsConflict), "the stale copy's status write is refused")

		// A pass whose reads do not show the Job yet (it was created between this pass's read and
		// its create) is refused the create and adopts the Job the API server has.
		unseen := &handPass{stale: stale, hideJob: true}
		_, err = unseen.reconciler().Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(unseen.writesOf("create", "Job")).To(ConsistOf(
			HaveField("Err", Satisfy(apierrors.IsAlreadyExists))), "one create, refused")
		Expect(unseen.writes).To(HaveEach(HaveField("Kind", BeElementOf("Job", "SubjectAccessReview"))), "no grant written again")
		Expect(unseen.status).NotTo(BeNil(), "the pass recorded the attempt")
		Expect(unseen.status.Attempts).To(Equal(recorded))

		// Still one Job created, never deleted, the one the stored status records.
		Consistently(created.jobs).Should(HaveLen(1))
		Expect(created.deletedJobs()).To(BeEmpty())
		Expect(created.open()).To(BeTrue(), "the watch saw everything")
		current := &batchv1.Job{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "raced-1"}, current)).To(Succeed())
		Expect(current.UID).To(Equal(job.UID))
		Expect(get(ctx, obj)(Default).Status.Attempts).To(Equal(recorded))

		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, req.NamespacedName, obj)) }).Should(BeTrue())
	})

	It("records an attempt whose Job someone else deleted as JobDeleted, retries it per its policy, and fails once no retry is left", func(ctx SpecContext) {
		obj := newExecution(ns, "job-deleted", `{"sleepSeconds":600}`)
		obj.Spec.MaxRetries = ptr.To[int32](1)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		deleteJob := func(name string) {
			job := &batchv1.Job{}
			Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, job) }).Should(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRunning))
			// As kubectl delete job does: its pods go with it.
			Expect(k8s.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
		}

		deleteJob("job-deleted-1")
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonBackingOff))
		Expect(got.Status.NextRetryTime).NotTo(BeNil())
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonJobDeleted))
		Expect(got.Status.Attempts[0].Message).To(Equal("Job job-deleted-1 was deleted before it finished"))
		Expect(got.Status.Attempts[0].EndTime).NotTo(BeNil())

		stepToRetry(ctx, obj)
		deleteJob("job-deleted-2")
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got = get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonMaxRetriesExceeded))
		Expect(got.Status.Attempts).To(HaveLen(2))
		for i, a := range got.Status.Attempts {
			Expect(a.JobName).To(Equal(fmt.Sprintf("job-deleted-%d", i+1)))
			Expect(a.Reason).To(Equal(v1alpha1.ReasonJobDeleted))
		}
		Expect(got.Status.Result.Error).To(ContainSubstring("last error: Job job-deleted-2 was deleted before it finished"))
		Consistently(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "job-deleted-3"}, &batchv1.Job{}))
		}).Should(BeTrue(), "no third attempt")
	})

	It("never retries a failed attempt of an action that is not idempotent", func(ctx SpecContext) {
		tpl := testActionTemplate("not-idempotent", "kubernaut-actions")
		tpl.Spec.RetryPolicy.Idempotent = ptr.To(false)
		createTemplate(ctx, tpl)
		obj := newExecution(ns, "once", `{"fail":true}`)
		obj.Spec.Action.Type = tpl.Name
		Expect(k8s.Create(ctx, obj)).To(Succeed())

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(validation.MaxRetries(got, tpl)).To(BeEquivalentTo(v1alpha1.DefaultMaxRetries), "retries were left")
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonNonRetryable))
		Expect(readyCondition(got).Message).To(HavePrefix(`attempt 1 failed and action "not-idempotent" is not idempotent: `))
		Expect(got.Status.NextRetryTime).To(BeNil())
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonActionFailed))
		Expect(*got.Status.Attempts[0].ExitCode).To(BeEquivalentTo(v1alpha1.ExitRetryable), "an exit code that is otherwise retried")
		// However long one waits.
		testClock.Step(testBackoff.Max)
		poke(ctx, obj)
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(1))
	})

	It("refuses without a Job an execution that asks for more retries than its template allows", func(ctx SpecContext) {
		tpl := testActionTemplate("capped-retries", "kubernaut-actions")
		tpl.Spec.RetryPolicy.MaxRetries = ptr.To[int32](1)
		createTemplate(ctx, tpl)
		// This suite runs no webhook, as when it is bypassed: the controller repeats the check.
		over := newExecution(ns, "over-cap", `{}`)
		over.Spec.Action.Type, over.Spec.MaxRetries = tpl.Name, ptr.To[int32](2)
		Expect(k8s.Create(ctx, over)).To(Succeed())
		atCap := newExecution(ns, "at-cap", `{}`)
		atCap.Spec.Action.Type, atCap.Spec.MaxRetries = tpl.Name, ptr.To[int32](1)
		Expect(k8s.Create(ctx, atCap)).To(Succeed())
		// One that does not say gets the default within the cap: 1 retry, not 3 refused.
		unset := newExecution(ns, "unset", `{"fail":true}`)
		unset.Spec.Action.Type = tpl.Name
		Expect(k8s.Create(ctx, unset)).To(Succeed())

		Eventually(phaseOf(ctx, over)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, over)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonValidationFailed))
		Expect(readyCondition(got).Message).To(Equal(`spec.maxRetries: Invalid value: 2: must be at most 1, the retry cap of action "capped-retries"`))
		Expect(got.Status.Attempts).To(BeEmpty())
		Eventually(phaseOf(ctx, atCap)).Should(Equal(v1alpha1.PhaseCompleted), "the cap itself is allowed")
		Eventually(phaseOf(ctx, unset)).Should(Equal(v1alpha1.PhaseRetrying))
		stepToRetry(ctx, unset)
		Eventually(phaseOf(ctx, unset)).Should(Equal(v1alpha1.PhaseFailed))
		Expect(readyCondition(get(ctx, unset)(Default)).Reason).To(Equal(v1alpha1.ReasonMaxRetriesExceeded))
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(ConsistOf(
			HaveField("Name", "at-cap-1"), HaveField("Name", "unset-1"), HaveField("Name", "unset-2")))
	})

	It("records a Warning Event on the execution when it retries, fails and times out", func(ctx SpecContext) {
		failing := newExecution(ns, "warns", `{"fail":true}`)
		failing.Spec.MaxRetries = ptr.To[int32](1)
		Expect(k8s.Create(ctx, failing)).To(Succeed())
		Eventually(phaseOf(ctx, failing)).Should(Equal(v1alpha1.PhaseRetrying))
		Eventually(eventsIn(ctx, ns)).Should(ContainElement(phaseEvent{
			Type: corev1.EventTypeWarning, Reason: v1alpha1.ReasonBackingOff, Action: string(v1alpha1.PhaseRetrying), Regarding: regarding(failing)}))
		stepToRetry(ctx, failing)
		Eventually(phaseOf(ctx, failing)).Should(Equal(v1alpha1.PhaseFailed))
		Eventually(eventsIn(ctx, ns)).Should(ContainElement(phaseEvent{
			Type: corev1.EventTypeWarning, Reason: v1alpha1.ReasonMaxRetriesExceeded, Action: string(v1alpha1.PhaseFailed), Regarding: regarding(failing)}))

		slow := newExecution(ns, "warns-slow", `{"sleepSeconds":600}`)
		slow.Spec.Timeout = &metav1.Duration{Duration: time.Minute}
		Expect(k8s.Create(ctx, slow)).To(Succeed())
		Eventually(phaseOf(ctx, slow)).Should(Equal(v1alpha1.PhaseRunning))
		testClock.Step(time.Minute)
		poke(ctx, slow)
		Eventually(phaseOf(ctx, slow)).Should(Equal(v1alpha1.PhaseTimedOut))
		Eventually(eventsIn(ctx, ns)).Should(ContainElement(phaseEvent{
			Type: corev1.EventTypeWarning, Reason: v1alpha1.ReasonTimedOut, Action: string(v1alpha1.PhaseTimedOut), Regarding: regarding(slow)}))

		// An attempt that starts is no warning.
		events := eventsIn(ctx, ns)(Default)
		for _, obj := range []*v1alpha1.KubernetesExecution{failing, slow} {
			Expect(events).To(ContainElement(phaseEvent{
				Type: corev1.EventTypeNormal, Reason: v1alpha1.ReasonProgressing, Action: string(v1alpha1.PhaseRunning), Regarding: regarding(obj)}))
		}
		Expect(events).NotTo(ContainElement(And(HaveField("Reason", v1alpha1.ReasonProgressing), HaveField("Type", corev1.EventTypeWarning))))
	})

	It("goes away with its owner, Jobs included, through the garbage collector", func(ctx SpecContext) {
		owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workflow"}}
		Expect(k8s.Create(ctx, owner)).To(Succeed())
		obj := newExecution(ns, "workflow-step-1", `{"sleepSeconds":600}`)
		obj.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(HaveLen(1))

		Expect(k8s.Delete(ctx, owner, client.PropagationPolicy(metav1.DeletePropagationForeground))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), &v1alpha1.KubernetesExecution{}))
		}).Should(BeTrue())
		Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
		Eventually(func() []corev1.Pod {
			pods := &corev1.PodList{}
			Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
			return pods.Items
		}).Should(BeEmpty())
	})

	Context("through kubectl", func() {
		apply := func(manifest string) (string, error) {
			return e2eutil.Kubectl(cluster.Kubeconfig, manifest, "apply", "-f", "-")
		}

		It("is rejected by the API server when the target is missing", func() {
			out, err := apply(fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: no-target, namespace: %s}
spec:
  action: {type: test-action}
`, ns))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("spec.action.target: Required value"))
			Expect(jobsOf(context.Background(), ns)).To(BeEmpty())
		})

		It("is rejected by the API server when maxRetries is negative", func() {
			out, err := apply(fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: negative, namespace: %s}
spec:
  maxRetries: -1
  action:
    type: test-action
    target: {namespace: %s, resourceKind: Deployment, resourceName: web}
`, ns, ns))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("spec.maxRetries: Invalid value: -1: spec.maxRetries in body should be greater than or equal to 0"))
		})

		It("refuses a change to the spec after creation", func(ctx SpecContext) {
			obj := newExecution(ns, "immutable", `{}`)
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "patch", "kexec", "immutable",
				"--type=merge", "-p", `{"spec":{"dryRun":true}}`)
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("spec is immutable"))
		})

		It("lists executions with their phase, action, target and attempts", func(ctx SpecContext) {
			obj := newExecution(ns, "listed", `{}`)
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "get", "kexec")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(MatchRegexp(`NAME\s+PHASE\s+ACTION\s+KIND\s+TARGET\s+ATTEMPTS\s+AGE\s+REASON`))
			Expect(out).To(MatchRegexp(`listed\s+Completed\s+test-action\s+Deployment\s+web\s+1\s+\S+\s+Succeeded`))
		})
	})
})

// kstatusOf computes the execution's kstatus, as kubectl wait, Flux and Argo CD read it.
func kstatusOf(obj *v1alpha1.KubernetesExecution) kstatus.Status {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: raw})
	Expect(err).NotTo(HaveOccurred())
	return res.Status
}

// localClusterActionsImage is an image the node agent can run.
const localClusterActionsImage = "ghcr.io/kubernaut/kubernaut-actions:test"

// discardRecorder drops Events, for reconcilers the test drives by hand.
type discardRecorder struct{}

func (discardRecorder) Eventf(_, _ runtime.Object, _, _, _, _ string, _ ...any) {}

// runningProcess waits until the node agent runs a process for a pod in ns, and returns its PID.
func runningProcess(ns string) int {
	GinkgoHelper()
	var pid int
	Eventually(func() int {
		for _, p := range cluster.Agent.Processes() {
			if p.Namespace == ns && !p.Exited {
				pid = p.PID
			}
		}
		return pid
	}).ShouldNot(BeZero())
	Expect(syscall.Kill(pid, 0)).To(Succeed(), "the action's process runs")
	return pid
}

// jobCondition returns the Job's condition of type t once it is True, else nil.
func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range job.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// phaseEvent is what the suite checks of an Event: its type, reason and action, and the object it
// is about.
type phaseEvent struct {
	Type, Reason, Action string
	Regarding            corev1.ObjectReference
}

// eventsIn lists the Events recorded in ns through the events.k8s.io API (the object each one
// regards without its resource version, which changes with every write).
func eventsIn(ctx context.Context, ns string) func(Gomega) []phaseEvent {
	return func(g Gomega) []phaseEvent {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		out := make([]phaseEvent, 0, len(list.Items))
		for _, e := range list.Items {
			ref := e.Regarding
			ref.ResourceVersion = ""
			out = append(out, phaseEvent{Type: e.Type, Reason: e.Reason, Action: e.Action, Regarding: ref})
		}
		return out
	}
}

// regarding is the reference an Event about obj carries.
func regarding(obj *v1alpha1.KubernetesExecution) corev1.ObjectReference {
	return corev1.ObjectReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "KubernetesExecution",
		Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID,
	}
}

// jobCreations records the Jobs created and deleted in a namespace, from a watch that starts
// before the spec creates anything there.
type jobCreations struct {
	mu      sync.Mutex
	added   []batchv1.Job
	deleted []string
	closed  bool
}

// watchJobCreations starts recording the Jobs created and deleted in ns, which holds none yet,
// until the spec ends.
func watchJobCreations(ctx context.Context, ns string) *jobCreations {
	GinkgoHelper()
	cs, err := kubernetes.NewForConfig(cluster.Config)
	Expect(err).NotTo(HaveOccurred())
	list, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(list.Items).To(BeEmpty())
	w, err := cs.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	c := &jobCreations{}
	go func() {
		defer func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.closed = true
		}()
		for ev := range w.ResultChan() {
			job, ok := ev.Object.(*batchv1.Job)
			if !ok {
				return // an error event: the watch ends here, and open says so
			}
			c.mu.Lock()
			switch ev.Type {
			case watch.Added:
				c.added = append(c.added, *job)
			case watch.Deleted:
				c.deleted = append(c.deleted, job.Name)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// jobs returns the Jobs created so far, in order.
func (c *jobCreations) jobs() []batchv1.Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]batchv1.Job(nil), c.added...)
}

// deletedJobs returns the names of the Jobs deleted so far.
func (c *jobCreations) deletedJobs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.deleted...)
}

// open says whether the watch still runs, so that no creation can have been missed.
func (c *jobCreations) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed
}

// handPass is one reconcile the spec drives by hand, as the manager's own identity (only the
// manager may write an execution's status), with a client of its own that goes straight to the
// API server (no cache) and records what the pass writes. With stale set, the pass reads
// that copy of the execution instead of the stored one; with hideJob, its reads do not show the
// attempt's Job (as a cache that has not seen it yet, and a read from the API server made just
// before another pass created it).
type handPass struct {
	stale   *v1alpha1.KubernetesExecution
	hideJob bool

	mu sync.Mutex
	// writes are the pass's writes, but for its status write, in order.
	writes []passWrite
	// status is the status the pass wrote, and statusErr the API server's answer.
	status    *v1alpha1.KubernetesExecutionStatus
	statusErr error
	// jobReads counts the pass's reads of a Job from the API server.
	jobReads int
}

// passWrite is one write of a hand-driven pass, with the API server's answer.
type passWrite struct {
	Verb, Kind, Name string
	Err              error
}

// writesOf returns the pass's writes of verb on objects of kind.
func (p *handPass) writesOf(verb, kind string) []passWrite {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []passWrite
	for _, w := range p.writes {
		if w.Verb == verb && w.Kind == kind {
			out = append(out, w)
		}
	}
	return out
}

func (p *handPass) record(verb string, obj client.Object, err error) {
	gvk, _ := apiutil.GVKForObject(obj, scheme)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writes = append(p.writes, passWrite{Verb: verb, Kind: gvk.Kind, Name: obj.GetName(), Err: err})
}

// reconciler returns a reconciler set up as the manager's, on the pass's clients.
func (p *handPass) reconciler() *controllers.KubernetesExecutionReconciler {
	GinkgoHelper()
	base, err := client.NewWithWatch(managerConfig, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if e, ok := obj.(*v1alpha1.KubernetesExecution); ok && p.stale != nil && key == client.ObjectKeyFromObject(p.stale) {
				p.stale.DeepCopyInto(e)
				return nil
			}
			if _, ok := obj.(*batchv1.Job); ok && p.hideJob {
				return apierrors.NewNotFound(batchv1.Resource("jobs"), key.Name)
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			err := c.Create(ctx, obj, opts...)
			p.record("create", obj, err)
			return err
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			err := c.Patch(ctx, obj, patch, opts...)
			p.record("patch", obj, err)
			return err
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			err := c.Update(ctx, obj, opts...)
			p.record("update", obj, err)
			return err
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			err := c.Delete(ctx, obj, opts...)
			p.record("delete", obj, err)
			return err
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			e, ok := obj.(*v1alpha1.KubernetesExecution)
			if !ok || sub != "status" {
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			}
			status := e.Status.DeepCopy()
			err := c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			p.mu.Lock()
			defer p.mu.Unlock()
			p.status, p.statusErr = status, err
			return err
		},
	})
	apiReader := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*batchv1.Job); ok {
				p.mu.Lock()
				p.jobReads++
				first := p.jobReads == 1
				p.mu.Unlock()
				if first && p.hideJob {
					return apierrors.NewNotFound(batchv1.Resource("jobs"), key.Name)
				}
			}
			return c.Get(ctx, key, obj, opts...)
		},
	})
	return &controllers.KubernetesExecutionReconciler{
		Client: c, APIReader: apiReader, Recorder: discardRecorder{}, Clock: testClock, Validator: &validation.Validator{},
		Options: controllers.ExecutorOptions{
			Backoff: testBackoff, JobTTL: time.Hour,
			ActionImages: map[string]string{"kubernaut-actions": localClusterActionsImage},
		},
	}
}
