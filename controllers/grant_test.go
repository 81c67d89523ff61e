package controllers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// canI asks the API server, through kubectl, whether a user or ServiceAccount may do something.
// kubectl auth can-i answers "yes" with exit status 0 and "no" (with " - " and a reason when the
// authorizer gives one) with exit status 1; anything else, an error included, which kubectl also
// reports with exit status 1, fails the spec rather than count as "no".
func canI(user string, args ...string) bool {
	GinkgoHelper()
	args = append([]string{"auth", "can-i", "--as=" + user}, args...)
	out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", args...)
	// The answer is the last line; kubectl may warn before it (cluster-scoped resources).
	lines := strings.Split(strings.TrimSpace(out), "\n")
	answer := lines[len(lines)-1]
	var exit *exec.ExitError
	switch {
	case err == nil && answer == "yes":
		return true
	case errors.As(err, &exit) && exit.ExitCode() == 1 && (answer == "no" || strings.HasPrefix(answer, "no - ")):
		return false
	}
	Fail(fmt.Sprintf("kubectl %s did not answer yes or no (%v):\n%s", strings.Join(args, " "), err, out))
	return false
}

// deployment is a target Deployment scaled to zero.
func deployment(ns, name string) *appsv1.Deployment { return e2eutil.IdleDeployment(ns, name) }

func grantsOf(ctx context.Context, obj *v1alpha1.KubernetesExecution) func() int {
	return func() int {
		sel := client.MatchingLabels{v1alpha1.LabelExecutionUID: string(obj.UID)}
		roles, bindings := &rbacv1.RoleList{}, &rbacv1.RoleBindingList{}
		croles, cbindings := &rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}
		Expect(k8s.List(ctx, roles, sel)).To(Succeed())
		Expect(k8s.List(ctx, bindings, sel)).To(Succeed())
		Expect(k8s.List(ctx, croles, sel)).To(Succeed())
		Expect(k8s.List(ctx, cbindings, sel)).To(Succeed())
		return len(roles.Items) + len(bindings.Items) + len(croles.Items) + len(cbindings.Items)
	}
}

var _ = Describe("Just-in-time RBAC", func() {
	var ns, targetNS, otherNS string
	BeforeEach(func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns = newNamespace(ctx)
		var err error
		targetNS, err = cluster.Namespace(ctx, "target", nil)
		Expect(err).NotTo(HaveOccurred())
		otherNS, err = cluster.Namespace(ctx, "other", nil)
		Expect(err).NotTo(HaveOccurred())
		for _, d := range []*appsv1.Deployment{deployment(targetNS, "web"), deployment(targetNS, "other"), deployment(otherNS, "web")} {
			Expect(k8s.Create(ctx, d)).To(Succeed())
		}
	})

	execOn := func(name, params string) *v1alpha1.KubernetesExecution {
		obj := newExecution(ns, name, params)
		obj.Spec.Action.Target.Namespace = targetNS
		return obj
	}

	It("lets the action do exactly its template's verbs on its target, and only while it runs", func(ctx SpecContext) {
		obj := execOn("holds-grant", `{"sleepSeconds":600}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		sa := serviceAccountOf(obj)
		Eventually(grantsOf(ctx, obj)).Should(Equal(2), "a Role and a RoleBinding in the target namespace")
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRunning))

		// The API server's RBAC authorizer sees the new binding a moment after it is stored.
		Eventually(func() bool { return canI(sa, "patch", "deployments/web", "-n", targetNS) }).Should(BeTrue())
		Expect(canI(sa, "get", "deployments/web", "-n", targetNS)).To(BeTrue())
		Expect(canI(sa, "patch", "deployments/other", "-n", targetNS)).To(BeFalse(), "another name")
		Expect(canI(sa, "delete", "deployments/web", "-n", targetNS)).To(BeFalse(), "another verb")
		Expect(canI(sa, "list", "deployments", "-n", targetNS)).To(BeFalse(), "a verb the template does not declare")
		Expect(canI(sa, "patch", "deployments/web", "-n", otherNS)).To(BeFalse(), "another namespace")
		Expect(canI(sa, "patch", "deployments/web", "-n", ns)).To(BeFalse(), "the execution's own namespace")
		Expect(canI(sa, "get", "secrets", "-n", targetNS)).To(BeFalse())

		// The action's identity, as a pod of the ServiceAccount gets it.
		identity, err := e2eutil.TokenConfig(ctx, cluster.Config, ns, controllers.ExecutionServiceAccountName(obj.Name))
		Expect(err).NotTo(HaveOccurred())
		Expect(patchAs(ctx, identity, targetNS, "web")).To(Succeed())

		// Deleting the execution cancels it and revokes the grant before the execution goes.
		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), &v1alpha1.KubernetesExecution{}))
		}).Should(BeTrue())
		Eventually(func() bool { return canI(sa, "patch", "deployments/web", "-n", targetNS) }).Should(BeFalse())
		// Token authentication is cached for about ten seconds; authorization is not.
		Eventually(func() error { return patchAs(ctx, identity, targetNS, "web") }, 30*time.Second, time.Second).
			Should(Satisfy(apierrors.IsForbidden))
	})

	It("lets the running action make its permitted call and refuses the forbidden one with 403", func(ctx SpecContext) {
		obj := execOn("probes", fmt.Sprintf(`{"apiCalls":[
			{"verb":"patch","group":"apps","resource":"deployments","namespace":%q,"name":"web"},
			{"verb":"delete","group":"apps","resource":"deployments","namespace":%q,"name":"web"}]}`, targetNS, targetNS))
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Message).To(ContainSubstring("delete deployments.apps %s/web: 403", targetNS))
		var data struct {
			Calls []struct {
				Call   string `json:"call"`
				Status int32  `json:"status"`
			} `json:"calls"`
		}
		Expect(json.Unmarshal(got.Status.Result.Data.Raw, &data)).To(Succeed())
		Expect(data.Calls).To(HaveLen(2))
		Expect(data.Calls[0].Status).To(BeEquivalentTo(200), data.Calls[0].Call)
		Expect(data.Calls[1].Status).To(BeEquivalentTo(403), data.Calls[1].Call)
		// The execution ended: its grant is gone.
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
		Eventually(func() []string { return get(ctx, obj)(Default).Finalizers }).Should(BeEmpty())
	})

	It("grants cluster-scoped rules with a ClusterRoleBinding, narrowed to the target node", func(ctx SpecContext) {
		tpl := createTemplate(ctx, &v1alpha1.ActionTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "node-test-action"},
			Spec: v1alpha1.ActionTemplateSpec{
				Image: "kubernaut-actions", Args: []string{"test-action"}, TargetKinds: []string{"Node"},
				RBAC: v1alpha1.ActionRBAC{Scope: v1alpha1.RBACScopeCluster, Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
				}},
			},
		})
		obj := newExecution(ns, "node-grant", `{"sleepSeconds":600}`)
		obj.Spec.Action.Type = tpl.Name
		obj.Spec.Action.Target = v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "local-node"}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(grantsOf(ctx, obj)).Should(Equal(2), "a ClusterRole and a ClusterRoleBinding")
		nodeSA := serviceAccountOf(obj)
		// The API server's RBAC authorizer sees the new binding a moment after it is stored.
		Eventually(func() bool { return canI(nodeSA, "patch", "nodes/local-node") }).Should(BeTrue())
		Expect(canI(nodeSA, "patch", "nodes/another-node")).To(BeFalse())
		Expect(canI(nodeSA, "delete", "nodes/local-node")).To(BeFalse())
		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
	})

	It("never grants a template above the ceiling, and says why", func(ctx SpecContext) {
		greedy := createTemplate(ctx, &v1alpha1.ActionTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "greedy"},
			Spec: v1alpha1.ActionTemplateSpec{
				Image: "kubernaut-actions", Args: []string{"test-action"}, TargetKinds: []string{"Deployment"},
				RBAC: v1alpha1.ActionRBAC{Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
					{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
				}},
			},
		})
		ready := meta.FindStatusCondition(greedy.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonRulesExceedCeiling))
		Expect(ready.Message).To(ContainSubstring("get secrets; list secrets"))
		Expect(meta.IsStatusConditionFalse(greedy.Status.Conditions, v1alpha1.ConditionRBACMaterialized)).To(BeTrue())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-action-greedy"}, &rbacv1.ClusterRole{}))).To(BeTrue())

		obj := execOn("greedy", `{}`)
		obj.Spec.Action.Type = "greedy"
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
		Expect(readyCondition(get(ctx, obj)(Default)).Reason).To(Equal(v1alpha1.ReasonTemplateNotReady))
		Consistently(grantsOf(ctx, obj)).Should(BeZero())
		Expect(jobsOf(ctx, ns)).To(BeEmpty())

		// The API server itself refuses the manager anything above the ceiling.
		cs, err := kubernetes.NewForConfig(managerConfig)
		Expect(err).NotTo(HaveOccurred())
		_, err = cs.RbacV1().Roles(targetNS).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "sneaky"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}},
		}, metav1.CreateOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("attempting to grant RBAC permissions not currently held"))
		manager := "system:serviceaccount:kubernaut-system:kubernaut-executor"
		for _, verb := range []string{"escalate", "bind"} {
			Expect(canI(manager, verb, "clusterroles")).To(BeFalse(), verb)
			Expect(canI(manager, verb, "roles", "-n", targetNS)).To(BeFalse(), verb)
		}
		Expect(canI(manager, "impersonate", "serviceaccounts")).To(BeFalse())
		Expect(canI(manager, "impersonate", "users")).To(BeFalse())
	})

	It("refuses wildcards and escalating verbs in a template", func(ctx SpecContext) {
		tpl := createTemplate(ctx, &v1alpha1.ActionTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "wildcard"},
			Spec: v1alpha1.ActionTemplateSpec{
				Image: "kubernaut-actions", TargetKinds: []string{"Deployment"},
				RBAC: v1alpha1.ActionRBAC{Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{"apps"}, Resources: []string{"*"}, Verbs: []string{"get"}},
					{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles"}, Verbs: []string{"escalate"}},
				}},
			},
		})
		ready := meta.FindStatusCondition(tpl.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonForbiddenRule))
		Expect(ready.Message).To(ContainSubstring(`spec.rbac.rules[0].resources[0]: Forbidden: wildcard "*"`))
		Expect(ready.Message).To(ContainSubstring(`spec.rbac.rules[1].verbs[0]: Forbidden: verb "escalate"`))
		Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
	})

	// Deleting a template stops no attempt already running. That attempt was admitted and checked
	// against the template's generation, runs with a grant of its own (a copy of the rules, not
	// the template's ClusterRole) and ends at its deadline in any case, while stopping it midway
	// could leave a change half applied (a node half drained) where letting it finish cannot. As
	// for an edited template or a requester's lost right, what is refused is the next attempt.
	It("keeps a running attempt's grant and records its outcome when the template is deleted, retries none, then removes everything", func(ctx SpecContext) {
		tpl := ensureTemplate(ctx, "disposable", "kubernaut-actions")
		Expect(tpl.Status.ClusterRoleName).To(Equal("kubernaut-action-disposable"))
		Expect(tpl.Status.EffectiveRules).To(Equal(tpl.Spec.RBAC.Rules))
		obj := execOn("disposable", fmt.Sprintf(`{"sleepSeconds":8,"apiCalls":[
			{"verb":"patch","group":"apps","resource":"deployments","namespace":%q,"name":"web"}]}`, targetNS))
		obj.Spec.Action.Type = tpl.Name
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		failing := execOn("disposable-fails", `{"sleepSeconds":8,"fail":true}`)
		failing.Spec.Action.Type = tpl.Name
		failing.Spec.Action.Target.ResourceName = "other" // beside the first: one execution per target at a time
		Expect(k8s.Create(ctx, failing)).To(Succeed())
		for _, o := range []*v1alpha1.KubernetesExecution{obj, failing} {
			Eventually(grantsOf(ctx, o)).Should(Equal(2))
			Eventually(phaseOf(ctx, o)).Should(Equal(v1alpha1.PhaseRunning))
		}
		saKey := client.ObjectKey{Namespace: ns, Name: controllers.ExecutionServiceAccountName(obj.Name)}
		Expect(k8s.Get(ctx, saKey, &corev1.ServiceAccount{})).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-action-disposable"}, &rbacv1.ClusterRole{})).To(Succeed())

		Expect(k8s.Delete(ctx, tpl)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-action-disposable"}, &rbacv1.ClusterRole{}))
		}).Should(BeTrue())
		// The attempt keeps its grant, makes its call and its outcome is recorded.
		Expect(phaseOf(ctx, obj)()).To(Equal(v1alpha1.PhaseRunning))
		Expect(canI(serviceAccountOf(obj), "patch", "deployments/web", "-n", targetNS)).To(BeTrue())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Result.Success).To(BeTrue(), got.Status.Result.Error)
		Expect(string(got.Status.Result.Data.Raw)).To(ContainSubstring(`"status":200`))
		Expect(got.Status.Attempts).To(HaveLen(1))
		Expect(got.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonSucceeded))
		// The attempt that fails ends the execution: no further attempt may start.
		Eventually(phaseOf(ctx, failing)).Should(Equal(v1alpha1.PhaseFailed))
		gotFailing := get(ctx, failing)(Default)
		Expect(readyCondition(gotFailing).Reason).To(Equal(v1alpha1.ReasonTemplateChanged))
		Expect(readyCondition(gotFailing).Message).To(And(HavePrefix("attempt 1 failed ("),
			HaveSuffix(`and no further attempt may start: ActionTemplate "disposable" was deleted after the execution was admitted`)))
		Expect(gotFailing.Status.Attempts).To(HaveLen(1))
		Expect(gotFailing.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonActionFailed))
		Expect(jobsOf(ctx, ns)).To(HaveLen(2), "one Job each")

		for _, o := range []*v1alpha1.KubernetesExecution{obj, failing} {
			Eventually(grantsOf(ctx, o)).Should(BeZero())
		}
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, saKey, &corev1.ServiceAccount{})) }).Should(BeTrue())
	})

	It("costs five writes for its identity and grant per execution, two for its finalizer, and one SubjectAccessReview per permission", func(ctx SpecContext) {
		obj := execOn("counted", `{}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(func() []string { return get(ctx, obj)(Default).Finalizers }).Should(BeEmpty())
		prefix := "kubernaut-exec." + ns + ".counted."
		rbacWrites := writes.matching(func(w write) bool { return strings.HasPrefix(w.Name, prefix) })
		Expect(rbacWrites).To(ConsistOf(
			write{"create", "Role", targetNS, rbacWrites[0].Name},
			write{"create", "RoleBinding", targetNS, rbacWrites[0].Name},
			write{"delete", "Role", targetNS, rbacWrites[0].Name},
		))
		finalizerWrites := writes.matching(func(w write) bool {
			return w.Kind == "KubernetesExecution" && w.Namespace == ns && w.Name == obj.Name && w.Verb == "patch"
		})
		Expect(finalizerWrites).To(HaveLen(2), "add and remove the finalizer")
		sa := controllers.ExecutionServiceAccountName(obj.Name)
		Expect(writes.matching(func(w write) bool { return w.Kind == "ServiceAccount" && w.Namespace == ns })).To(ConsistOf(
			write{"create", "ServiceAccount", ns, sa}, write{"delete", "ServiceAccount", ns, sa}))
		// One review per permission of the grant before the attempt's Job is created; a pass on a
		// stale copy that tries to create it again asks again, one that sees it does not.
		reviews := writes.matching(func(w write) bool { return w.Kind == "SubjectAccessReview" && w.Namespace == targetNS })
		creates := writes.matching(func(w write) bool { return w.Verb == "create" && w.Kind == "Job" && w.Namespace == ns })
		Expect(creates).NotTo(BeEmpty())
		Expect(reviews).To(HaveLen(2*len(creates)), "get and patch of deployments/web, per Job create")
		Expect(reviews[:2]).To(ConsistOf(
			write{"create", "SubjectAccessReview", targetNS, "get deployments web"},
			write{"create", "SubjectAccessReview", targetNS, "patch deployments web"}))
	})

	It("revokes a grant after a manager restart between grant and revoke", func(ctx SpecContext) {
		obj := execOn("survives-restart", `{"sleepSeconds":3}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(grantsOf(ctx, obj)).Should(Equal(2))
		stopManager()
		// The action finishes while no manager runs; its grant is still there.
		Eventually(func(g Gomega) {
			job := &batchv1.Job{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "survives-restart-1"}, job)).To(Succeed())
			g.Expect(job.Status.Succeeded).To(BeEquivalentTo(1))
		}).Should(Succeed())
		Expect(grantsOf(ctx, obj)()).To(Equal(2))
		startManager()
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(grantsOf(ctx, obj)).Should(BeZero())
		Eventually(func() bool { return canI(serviceAccountOf(obj), "patch", "deployments/web", "-n", targetNS) }).Should(BeFalse())
	})
})

// patchAs makes a server-side dry-run patch of a Deployment as identity.
func patchAs(ctx context.Context, identity *rest.Config, ns, name string) error {
	cs, err := kubernetes.NewForConfig(identity)
	if err != nil {
		return err
	}
	_, err = cs.AppsV1().Deployments(ns).Patch(ctx, name, "application/merge-patch+json", []byte(`{}`),
		metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// serviceAccountOf is the username of an execution's own ServiceAccount.
func serviceAccountOf(obj *v1alpha1.KubernetesExecution) string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", obj.Namespace, controllers.ExecutionServiceAccountName(obj.Name))
}
