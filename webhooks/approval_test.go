package webhooks_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// approvalTemplate is the keywords action, with every execution waiting for approval.
var approvalTemplate = strings.Replace(keywordsTemplate, "name: keywords", "name: keywords-approved", 1) + "  approval: Required\n"

// decide sets the Approved condition of execution ns/name, as user, with the plain kubectl
// command docs/security.md documents: a server-side apply of that one condition through the
// status subresource (the manager owns the condition's fields until then, hence
// --force-conflicts). statusLines are more status fields to send with it (two-space indented).
func decide(user, ns, name string, approve bool, reason string, statusLines ...string) (string, error) {
	status, condReason := "True", "Approved"
	if !approve {
		status, condReason = "False", "Denied"
	}
	manifest := fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: %s, namespace: %s}
status:
  conditions:
  - {type: Approved, status: %q, reason: %s, message: %q}
%s`, name, ns, status, condReason, reason, strings.Join(statusLines, "\n"))
	return e2eutil.Kubectl(cluster.Kubeconfig, manifest, "apply", "--server-side", "--subresource=status",
		"--field-manager=kubectl-approve", "--force-conflicts", "--as="+user, "-f", "-")
}

// withoutMutatingWebhook takes one webhook out of the executor's mutating configuration for the
// rest of the spec, as on a cluster where it is not installed, and puts it back afterwards.
func withoutMutatingWebhook(ctx context.Context, name string) {
	config := &admissionregistrationv1.MutatingWebhookConfiguration{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: "mutating-webhook-configuration"}, config)).To(Succeed())
	saved := config.DeepCopy()
	kept := config.Webhooks[:0]
	for _, w := range config.Webhooks {
		if w.Name != name {
			kept = append(kept, w)
		}
	}
	Expect(kept).To(HaveLen(len(saved.Webhooks)-1), "no webhook %s", name)
	config.Webhooks = kept
	Expect(k8s.Update(ctx, config)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Eventually(func() error {
			current := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(saved), current); err != nil {
				return err
			}
			current.Webhooks = saved.Webhooks
			return k8s.Update(ctx, current)
		}).Should(Succeed())
		// The API server reloads webhook configurations a moment after they are stored.
		time.Sleep(2 * time.Second)
	})
	time.Sleep(2 * time.Second)
}

var _ = Describe("Approval through the status subresource", func() {
	var ns, requester, approver, outsider string
	BeforeEach(func(ctx SpecContext) {
		out, err := apply(approvalTemplate)
		Expect(err).NotTo(HaveOccurred(), out)
		waitReady(ctx, "keywords-approved")
		ns, err = cluster.Namespace(ctx, "approval", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())

		executions := v1alpha1.GroupVersion.Group
		// The requester may also approve and write statuses: four eyes holds anyway.
		requester = "requester-" + ns
		grant(ctx, requester, ns,
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"create", "get", "approve"}},
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions/status"}, Verbs: []string{"get", "patch"}},
			rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}})
		approver = "approver-" + ns
		grant(ctx, approver, ns,
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"get", "list", "approve"}},
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions/status"}, Verbs: []string{"get", "patch"}})
		// RBAC lets the outsider write statuses, but not approve.
		outsider = "outsider-" + ns
		grant(ctx, outsider, ns,
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"get", "list"}},
			rbacv1.PolicyRule{APIGroups: []string{executions}, Resources: []string{"kubernetesexecutions/status"}, Verbs: []string{"get", "patch"}})
	})

	// waiting creates an execution of keywords-approved as the requester and waits until the
	// manager holds it for approval.
	waiting := func(ctx context.Context, name string) *v1alpha1.KubernetesExecution {
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, execution(ns, name, "keywords-approved", `{replicas: 1}`, ""), "create", "--as="+requester, "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		obj := &v1alpha1.KubernetesExecution{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
			g.Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseAwaitingApproval))
			c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionApproved)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionUnknown))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonAwaitingApproval))
		}).Should(Succeed())
		return obj
	}
	current := func(ctx context.Context, name string) *v1alpha1.KubernetesExecution {
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
		return obj
	}
	// jobsOf lists the Jobs of execution name.
	jobsOf := func(ctx context.Context, name string) []batchv1.Job {
		jobs := &batchv1.JobList{}
		Expect(k8s.List(ctx, jobs, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelExecution: name})).To(Succeed())
		return jobs.Items
	}
	// refused checks that the decision was refused with want, that the status is still before,
	// and that the execution has no Job.
	refused := func(ctx context.Context, out string, err error, before *v1alpha1.KubernetesExecution, want string) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(want))
		Expect(current(ctx, before.Name).Status).To(Equal(before.Status), "the status changed")
		Consistently(func() []batchv1.Job { return jobsOf(ctx, before.Name) }, "500ms").Should(BeEmpty())
	}

	It("refuses the requester's own approval and a user without approve, then records the approver's, and the execution runs", func(ctx SpecContext) {
		before := waiting(ctx, "needs-approval")
		Consistently(func() []batchv1.Job { return jobsOf(ctx, before.Name) }, "2s").Should(BeEmpty(), "no Job before a decision")

		out, err := decide(requester, ns, before.Name, true, "looks fine to me")
		refused(ctx, out, err, before, fmt.Sprintf("status.conditions[Approved]: Forbidden: %s asked for this execution (spec.admission) and may not decide on it", requester))

		out, err = decide(outsider, ns, before.Name, true, "why not")
		refused(ctx, out, err, before, fmt.Sprintf(
			`status.conditions[Approved]: Forbidden: %s may not approve kubernetesexecutions.kubernetesexecution.kubernaut.io "needs-approval" in namespace %s (the verb approve)`, outsider, ns))

		// The approver may decide, and nothing else: not the phase along with the decision.
		out, err = decide(approver, ns, before.Name, true, "checked with the owner", "  phase: Running")
		refused(ctx, out, err, before, fmt.Sprintf("status: Forbidden: only the executor (system:serviceaccount:kubernaut-system:kubernaut-executor) writes the status of a KubernetesExecution, not %s", approver))

		out, err = decide(approver, ns, before.Name, true, "checked with the owner")
		Expect(err).NotTo(HaveOccurred(), out)
		decided := current(ctx, before.Name)
		Expect(decided.Status.Approval).NotTo(BeNil(), "the webhook recorded the decision")
		Expect(decided.Status.Approval.Decision).To(Equal(v1alpha1.DecisionApproved))
		Expect(decided.Status.Approval.Approver.Username).To(Equal(approver))
		Expect(decided.Status.Approval.Approver.Groups).To(ConsistOf("system:authenticated"))
		Expect(decided.Status.Approval.Reason).To(Equal("checked with the owner"))
		Expect(decided.Status.Approval.Time.Time).To(BeTemporally("~", time.Now(), 30*time.Second))
		c := meta.FindStatusCondition(decided.Status.Conditions, v1alpha1.ConditionApproved)
		Expect(c.Status).To(Equal(metav1.ConditionTrue))
		Expect(c.Message).To(Equal("checked with the owner"))
		Expect(c.LastTransitionTime.Time).To(BeTemporally("==", decided.Status.Approval.Time.Time), "the transition is the decision's")

		Eventually(func() v1alpha1.ExecutionPhase { return current(ctx, before.Name).Status.Phase }).Should(Equal(v1alpha1.PhaseCompleted))
		Expect(jobsOf(ctx, before.Name)).To(HaveLen(1))

		// A decision is final: nobody decides again.
		record := current(ctx, before.Name).Status.Approval
		out, err = decide(approver, ns, before.Name, false, "changed my mind")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf("status.conditions[Approved]: Forbidden: the execution was already approved by %s; a decision is final", approver)))
		Expect(current(ctx, before.Name).Status.Approval).To(Equal(record))
	})

	It("fails a denied execution with the approver's reason, and no Job ever runs", func(ctx SpecContext) {
		before := waiting(ctx, "denied")
		out, err := decide(approver, ns, before.Name, false, "not during the freeze")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(current(ctx, before.Name).Status.Approval).To(PointTo(MatchFields(IgnoreExtras, Fields{
			"Decision": Equal(v1alpha1.DecisionDenied), "Reason": Equal("not during the freeze"),
		})))
		Expect(current(ctx, before.Name).Status.Approval.Approver.Username).To(Equal(approver))
		Eventually(func(g Gomega) {
			obj := current(ctx, before.Name)
			g.Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseFailed))
			ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonDenied))
			g.Expect(ready.Message).To(ContainSubstring("not during the freeze"))
		}).Should(Succeed())
		Consistently(func() []batchv1.Job { return jobsOf(ctx, before.Name) }, "2s").Should(BeEmpty())
	})

	It("records the writer, whatever record the writer sends, and stores no decision without the webhook's record", func(ctx SpecContext) {
		before := waiting(ctx, "forged-record")
		// A record the approver sends is replaced by the webhook's.
		out, err := decide(approver, ns, before.Name, true, "fine", "  approval: {decision: Approved, approver: {username: someone-else}, time: '2020-01-01T00:00:00Z', reason: fine}")
		Expect(err).NotTo(HaveOccurred(), out)
		record := current(ctx, before.Name).Status.Approval
		Expect(record.Approver.Username).To(Equal(approver))
		Expect(record.Time.Time).To(BeTemporally("~", time.Now(), 30*time.Second))

		// Without the webhook, the status policy refuses a decision, with or without a record
		// the writer made up.
		other := waiting(ctx, "unrecorded")
		withoutMutatingWebhook(ctx, "mkubernetesexecution-approval.kubernaut.io")
		out, err = decide(approver, ns, other.Name, true, "fine")
		refused(ctx, out, err, other, "status.approval: Forbidden: the executor's webhook records each decision")
		out, err = decide(approver, ns, other.Name, true, "fine", "  approval: {decision: Approved, approver: {username: someone-else}, time: '2020-01-01T00:00:00Z', reason: fine}")
		refused(ctx, out, err, other, "status.approval: Forbidden: the executor's webhook records each decision")
	})
})
