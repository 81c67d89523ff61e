package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// tenant is a user with a few rights, acting through impersonation.
type tenant struct {
	name string
	// c creates executions as the tenant, recording their admission as the webhook would.
	c client.Client
	// raw acts as the tenant with nothing added.
	raw client.Client
}

// newTenant gives user the rules as a Role in each namespace (cluster-wide when namespaces is
// empty) and returns clients that act as user.
func newTenant(ctx context.Context, user string, rules []rbacv1.PolicyRule, namespaces ...string) *tenant {
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	for _, ns := range namespaces {
		Expect(e2eutil.GrantUser(ctx, k8s, user, ns, rules...)).To(Succeed())
	}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := recordingAdmission(ctx, cfg)
	Expect(err).NotTo(HaveOccurred())
	raw, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return &tenant{name: user, c: c, raw: raw}
}

var executionRights = rbacv1.PolicyRule{
	APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"get", "list", "watch", "create"},
}

// withoutPolicyBinding removes an admission policy's binding for the rest of the spec, as on a
// cluster where it was never installed, and puts it back afterwards.
func withoutPolicyBinding(ctx context.Context, name string) {
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, binding)).To(Succeed())
	Expect(k8s.Delete(ctx, binding)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		restored := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: binding.Labels}, Spec: binding.Spec,
		}
		Expect(k8s.Create(ctx, restored)).To(Succeed())
		// The API server applies a policy a moment after its binding is stored.
		time.Sleep(2 * time.Second)
	})
	time.Sleep(2 * time.Second)
}

var _ = Describe("The executor is never a way around RBAC", func() {
	var ns, targetNS string
	BeforeEach(func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns = newNamespace(ctx)
		var err error
		targetNS, err = cluster.Namespace(ctx, "target", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, deployment(targetNS, "web"))).To(Succeed())
	})

	onTarget := func(name, params string) *v1alpha1.KubernetesExecution {
		obj := newExecution(ns, name, params)
		obj.Spec.Action.Target.Namespace = targetNS
		return obj
	}
	deploymentRights := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}

	It("refuses the next attempt of a requester who lost a right since admission", func(ctx SpecContext) {
		alice := newTenant(ctx, "alice-"+ns, []rbacv1.PolicyRule{executionRights}, ns)
		newTenant(ctx, "alice-"+ns, []rbacv1.PolicyRule{deploymentRights}, targetNS)
		obj := onTarget("loses-right", `{"failUntilAttempt":2}`)
		Expect(alice.c.Create(ctx, obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester.Username).To(Equal(alice.name))
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))

		// The right to patch the target goes; the retry must not start.
		Expect(k8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: targetNS, Name: "grant-" + alice.name}})).To(Succeed())
		Eventually(func() bool { return canI(alice.name, "patch", "deployments/web", "-n", targetNS) }).Should(BeFalse())
		stepToRetry(ctx, obj)
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonRequesterForbidden))
		Expect(readyCondition(got).Message).To(ContainSubstring(fmt.Sprintf(`the requester %s may no longer get deployments.apps "web" in namespace %s, patch deployments.apps "web"`, alice.name, targetNS)))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(jobsOf(ctx, ns)).To(HaveLen(1), "no Job for the refused attempt")
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
	})

	It("refuses the next attempt once the template was edited", func(ctx SpecContext) {
		tpl := ensureTemplate(ctx, "editable-"+ns, "kubernaut-actions")
		obj := onTarget("template-edited", `{"failUntilAttempt":2}`)
		obj.Spec.Action.Type = tpl.Name
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))

		tpl.Spec.Description = "Edited while an execution waits for its retry."
		Expect(k8s.Update(ctx, tpl)).To(Succeed())
		// No clock step: the change alone ends the execution, without waiting for the retry.
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonTemplateChanged))
		Expect(readyCondition(got).Message).To(ContainSubstring("was edited after the execution was admitted (generation 1 admitted, now 2)"))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(jobsOf(ctx, ns)).To(HaveLen(1))
	})

	It("never runs an execution that carries no admission record, and the API server refuses a forged one", func(ctx SpecContext) {
		// With the policy in place, a record naming someone else is refused at create.
		mallory := newTenant(ctx, "mallory-"+ns, []rbacv1.PolicyRule{executionRights}, ns)
		forged := onTarget("forged-requester", `{}`)
		forged.Spec.Admission = &v1alpha1.AdmissionRecord{Requester: v1alpha1.UserInfo{Username: "kubernetes-admin", Groups: []string{"system:masters"}}}
		err := mallory.raw.Create(ctx, forged)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.admission.requester: Forbidden: must be the identity of the user who creates the execution"))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(forged), &v1alpha1.KubernetesExecution{}))).To(BeTrue())

		// Without the policy (and without the webhook), nothing records a requester: it never runs.
		withoutPolicyBinding(ctx, "kubernaut-executor-requester")
		bare := onTarget("no-record", `{}`)
		Expect(rawK8s.Create(ctx, bare)).To(Succeed())
		Eventually(phaseOf(ctx, bare)).Should(Equal(v1alpha1.PhaseFailed))
		Expect(readyCondition(get(ctx, bare)(Default)).Reason).To(Equal(v1alpha1.ReasonRequesterNotRecorded))
		Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }).Should(BeEmpty())
		Expect(grantsOf(ctx, bare)()).To(BeZero())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.ExecutionServiceAccountName(bare.Name)}, &corev1.ServiceAccount{}))).To(BeTrue())
	})

	It("refuses status writes from anyone but the manager, and never deletes a Job it does not control", func(ctx SpecContext) {
		victim := onTarget("victim", `{"sleepSeconds":600}`)
		Expect(k8s.Create(ctx, victim)).To(Succeed())
		Eventually(phaseOf(ctx, victim)).Should(Equal(v1alpha1.PhaseRunning))
		// On another target: the victim holds web while it runs.
		Expect(k8s.Create(ctx, deployment(targetNS, "api"))).To(Succeed())
		own := onTarget("own", `{}`)
		own.Spec.Action.Target.ResourceName = "api"
		Expect(k8s.Create(ctx, own)).To(Succeed())
		// Settled: completed, audited and released, so that no write of the manager's races the
		// forged ones below (a race would answer Conflict before admission is asked).
		Eventually(func(g Gomega) {
			got := get(ctx, own)(g)
			g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseCompleted))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAudited)).NotTo(BeNil())
			g.Expect(got.Finalizers).To(BeEmpty())
		}).Should(Succeed())

		// A tenant whom RBAC lets write statuses names the victim's Job as its own timed-out attempt.
		eve := newTenant(ctx, "eve-"+ns, []rbacv1.PolicyRule{executionRights, {
			APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions/status"}, Verbs: []string{"get", "update", "patch"},
		}}, ns)
		forge := func(c client.Client) error {
			obj := get(ctx, own)(Default)
			obj.Status.Phase = v1alpha1.PhaseRunning
			obj.Status.Attempts = []v1alpha1.Attempt{{Number: 1, JobName: "victim-1", Reason: v1alpha1.ReasonTimedOut}}
			obj.Status.Result = &v1alpha1.ExecutionResult{Success: true, Output: "forged"}
			return c.Status().Update(ctx, obj)
		}
		before := get(ctx, own)(Default).Status
		for _, c := range []client.Client{eve.raw, rawK8s} {
			err := forge(c)
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring("only the executor"))
		}
		Expect(get(ctx, own)(Default).Status).To(Equal(before))

		// Even where the status policy is missing, the manager deletes no Job it does not control.
		withoutPolicyBinding(ctx, "kubernaut-executor-status-writer")
		Expect(forge(rawK8s)).To(Succeed())
		poke(ctx, own)
		Consistently(func(g Gomega) {
			job := &batchv1.Job{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "victim-1"}, job)).To(Succeed())
			g.Expect(job.DeletionTimestamp).To(BeNil())
		}, 3*time.Second).Should(Succeed())
		Expect(phaseOf(ctx, victim)()).To(Equal(v1alpha1.PhaseRunning))
	})

	It("refuses a token minted for the execution's ServiceAccount once the execution ends", func(ctx SpecContext) {
		obj := onTarget("token-holder", `{"sleepSeconds":4}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRunning))
		var identity *rest.Config
		Eventually(func() error {
			var err error
			identity, err = e2eutil.TokenConfig(ctx, cluster.Config, ns, controllers.ExecutionServiceAccountName(obj.Name))
			return err
		}).Should(Succeed())
		Eventually(func() error { return patchAs(ctx, identity, targetNS, "web") }).Should(Succeed())

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		// The ServiceAccount is gone, so its tokens no longer authenticate (after the API
		// server's token cache of about ten seconds).
		Eventually(func() error { return patchAs(ctx, identity, targetNS, "web") }, 30*time.Second, time.Second).
			Should(Satisfy(apierrors.IsUnauthorized))
	})

	It("sweeps the grant of an execution whose finalizer was forced off", func(ctx SpecContext) {
		obj := onTarget("forced-off", `{"sleepSeconds":600}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(grantsOf(ctx, obj)).Should(Equal(2))
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRunning))
		Expect(rawK8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }).Should(BeTrue())
		// The Role in the target's namespace has no owner there; the sweep removes it.
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.ExecutionServiceAccountName(obj.Name)}, &corev1.ServiceAccount{}))
		}).Should(BeTrue())
		Eventually(func() bool { return canI(serviceAccountOf(obj), "patch", "deployments/web", "-n", targetNS) }).Should(BeFalse())
	})

	It("reads an attempt's outcome only from the pod its Job controls", func(ctx SpecContext) {
		obj := onTarget("decoyed", `{"sleepSeconds":4}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		job := &batchv1.Job{}
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "decoyed-1"}, job) }).Should(Succeed())
		// A pod with the Job's labels, controlled by something else (so the Job controller does
		// not adopt it, as it would an orphan), that claims the image cannot be pulled.
		owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "decoy-owner"}}
		Expect(k8s.Create(ctx, owner)).To(Succeed())
		decoy := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "decoy", Labels: map[string]string{
				batchv1.ControllerUidLabel: string(job.UID), batchv1.JobNameLabel: job.Name, v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
			}, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: "nowhere", Containers: []corev1.Container{{
				Name: controllers.ActionContainerName, Image: "registry.invalid/decoy:1",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			}}},
		}
		Expect(k8s.Create(ctx, decoy)).To(Succeed())
		decoy.Status.Phase = corev1.PodPending
		decoy.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: controllers.ActionContainerName, Image: "registry.invalid/decoy:1",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "forged"}}}}
		Expect(k8s.Status().Update(ctx, decoy)).To(Succeed())
		poke(ctx, obj)

		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		Expect(get(ctx, obj)(Default).Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonSucceeded))
	})

	// A pod lost mid-run. Evicted (a drain: the pod gets the DisruptionTarget condition), an
	// idempotent action's pod is replaced by the Job controller within the attempt; deleted (no
	// such condition: the kubelet kills it and the Job fails), its attempt ends as PodDisrupted
	// and the next attempt runs. A non-idempotent action never runs again either way: the
	// execution fails with the disruption as its reason. The template lists the kill's exit
	// code (143) as non-retryable: a disruption must not read it as the action's.
	DescribeTable("an action's pod lost mid-run",
		func(ctx SpecContext, idempotent bool, lose func(context.Context, *corev1.Pod) error, wantPhase v1alpha1.ExecutionPhase, wantReady string, wantReasons []string, wantPods int) {
			tpl := &v1alpha1.ActionTemplate{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("disruptable-%t", idempotent)},
				Spec: v1alpha1.ActionTemplateSpec{
					Image: "kubernaut-actions", Args: []string{"test-action"}, TargetKinds: []string{"Deployment"},
					RetryPolicy: v1alpha1.RetryPolicy{Idempotent: ptr.To(idempotent), NonRetryableExitCodes: []int32{137, 143}},
				},
			}
			createTemplate(ctx, tpl)
			obj := onTarget("disrupted", `{"sleepSeconds":8}`)
			obj.Spec.Action.Type = tpl.Name
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			pods := func(g Gomega) []corev1.Pod {
				list := &corev1.PodList{}
				g.Expect(k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelExecution: obj.Name})).To(Succeed())
				return list.Items
			}
			var pod corev1.Pod
			Eventually(func(g Gomega) {
				list := pods(g)
				g.Expect(list).To(HaveLen(1))
				g.Expect(list[0].Status.Phase).To(Equal(corev1.PodRunning))
				pod = list[0]
			}).Should(Succeed())
			Expect(lose(ctx, &pod)).To(Succeed())
			if len(wantReasons) > 1 {
				Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
				stepToRetry(ctx, obj)
			}

			Eventually(phaseOf(ctx, obj), 30*time.Second).Should(Equal(wantPhase))
			got := get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(wantReady), readyCondition(got).Message)
			Expect(got.Status.Attempts).To(HaveLen(len(wantReasons)))
			for i, a := range got.Status.Attempts {
				Expect(a.Reason).To(Equal(wantReasons[i]), "attempt %d: %s", a.Number, a.Message)
			}
			if wantPhase == v1alpha1.PhaseFailed {
				Expect(got.Status.Result.Error).To(ContainSubstring("the action's pod was disrupted"))
			}
			Expect(jobsOf(ctx, ns)).To(HaveLen(len(wantReasons)), "one Job per attempt")
			// No pod beyond the ones expected ever runs the action: the lost one is being deleted
			// (its grace period may not be over yet) or gone; none other is started.
			Consistently(func(g Gomega) []string {
				var live []string
				for _, p := range pods(g) {
					if p.DeletionTimestamp == nil {
						live = append(live, p.Name)
					}
				}
				return live
			}, 3*time.Second).Should(HaveLen(wantPods))
		},
		Entry("not idempotent, evicted: fails as PodDisrupted", false, evict,
			v1alpha1.PhaseFailed, v1alpha1.ReasonPodDisrupted, []string{v1alpha1.ReasonPodDisrupted}, 0),
		Entry("not idempotent, deleted: fails as PodDisrupted", false, deletePod,
			v1alpha1.PhaseFailed, v1alpha1.ReasonPodDisrupted, []string{v1alpha1.ReasonPodDisrupted}, 0),
		Entry("idempotent, evicted: the Job runs a new pod, and the attempt succeeds", true, evict,
			v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, []string{v1alpha1.ReasonSucceeded}, 1),
		Entry("idempotent, deleted: the attempt ends as PodDisrupted, and the next one succeeds", true, deletePod,
			v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, []string{v1alpha1.ReasonPodDisrupted, v1alpha1.ReasonSucceeded}, 1),
	)
})

// stepToRetry moves the test clock to the execution's next retry and has it reconciled.
func stepToRetry(ctx context.Context, obj *v1alpha1.KubernetesExecution) {
	next := get(ctx, obj)(Default).Status.NextRetryTime
	Expect(next).NotTo(BeNil())
	testClock.Step(next.Sub(testClock.Now()) + time.Second)
	poke(ctx, obj)
}

// deletePod deletes a pod as kubectl delete pod does, with its grace period.
func deletePod(ctx context.Context, pod *corev1.Pod) error {
	return k8s.Delete(ctx, pod)
}

// evict evicts a pod through the Eviction API, as a node drain does.
func evict(ctx context.Context, pod *corev1.Pod) error {
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		return err
	}
	return cs.CoreV1().Pods(pod.Namespace).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}})
}
