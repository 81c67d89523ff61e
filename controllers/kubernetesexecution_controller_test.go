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
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	tpl := &v1alpha1.ActionTemplate{
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
	return createTemplate(ctx, tpl)
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
func newNamespace(ctx context.Context) string {
	ns, err := cluster.Namespace(ctx, "kexec", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	Expect(err).NotTo(HaveOccurred())
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
		completedBefore := testutil.ToFloat64(controllers.ExecutionsTotal.WithLabelValues(testTemplate, "Completed"))
		obj := newExecution(ns, "succeed", `{"output":"scaled web to 3"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(func() float64 {
			return testutil.ToFloat64(controllers.ExecutionsTotal.WithLabelValues(testTemplate, "Completed"))
		}).Should(BeNumerically(">=", completedBefore+1), "kubernaut_executions_total counts the execution")
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

	It("times out: deletes the running Job and the process is gone", func(ctx SpecContext) {
		obj := newExecution(ns, "slow", `{"sleepSeconds":600}`)
		obj.Spec.Timeout = &metav1.Duration{Duration: 4 * time.Second}
		Expect(k8s.Create(ctx, obj)).To(Succeed())

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

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseTimedOut))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Message).To(MatchRegexp(`execution timed out after \d+s`))
		Expect(got.Status.Result.Error).To(ContainSubstring("timed out after"))
		Eventually(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
		Eventually(func() error { return syscall.Kill(pid, 0) }).Should(MatchError(syscall.ESRCH), "the process is gone")
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

	It("creates an attempt's Job once, however many reconcilers race for it", func(ctx SpecContext) {
		obj := newExecution(ns, "raced", `{"sleepSeconds":2}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		// Reconcilers without a cache, as a restarted manager would be, racing the suite's manager.
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				r := &controllers.KubernetesExecutionReconciler{
					Client: k8s, APIReader: k8s, Recorder: discardRecorder{}, Clock: testClock, Validator: &validation.Validator{},
					Options: controllers.ExecutorOptions{Backoff: testBackoff, JobTTL: time.Hour},
				}
				_, _ = r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}()
		}
		wg.Wait()
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(jobsOf(ctx, ns)).To(HaveLen(1))
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
			Expect(out).To(MatchRegexp(`NAME\s+PHASE\s+ACTION\s+KIND\s+TARGET\s+ATTEMPTS\s+AGE`))
			Expect(out).To(MatchRegexp(`listed\s+Completed\s+test-action\s+Deployment\s+web\s+1\s+`))
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
