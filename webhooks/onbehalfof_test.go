package webhooks_test

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// onBehalfOf adds the on-behalf-of annotations to an execution's manifest (groups left out
// when empty).
func onBehalfOf(manifest, user, groups string) string {
	annotations := fmt.Sprintf("annotations: {%s: %q", v1alpha1.AnnotationOnBehalfOf, user)
	if groups != "" {
		annotations += fmt.Sprintf(", %s: %q", v1alpha1.AnnotationOnBehalfOfGroups, groups)
	}
	out := strings.Replace(manifest, "}\nspec:", ", "+annotations+"}}\nspec:", 1)
	Expect(out).NotTo(Equal(manifest))
	return out
}

// withoutExecutionWebhooks takes the executor's requester record and validating webhooks for
// executions out for the rest of the spec, so that only the API server's own admission
// policies decide, and puts them back afterwards.
func withoutExecutionWebhooks(ctx context.Context) {
	withoutMutatingWebhook(ctx, "mkubernetesexecution.kubernaut.io")
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: "validating-webhook-configuration"}, config)).To(Succeed())
	saved := config.DeepCopy()
	kept := config.Webhooks[:0]
	for _, w := range config.Webhooks {
		if w.Name != "vkubernetesexecution.kubernaut.io" {
			kept = append(kept, w)
		}
	}
	config.Webhooks = kept
	Expect(k8s.Update(ctx, config)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Eventually(func() error {
			current := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(saved), current); err != nil {
				return err
			}
			current.Webhooks = saved.Webhooks
			return k8s.Update(ctx, current)
		}).Should(Succeed())
	})
}

var _ = Describe("On behalf of another user", func() {
	var ns, creator, person, group string
	BeforeEach(func(ctx SpecContext) {
		out, err := apply(keywordsTemplate)
		Expect(err).NotTo(HaveOccurred(), out)
		waitReady(ctx, "keywords")
		ns, err = cluster.Namespace(ctx, "behalf", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())
		// The creator (an upstream controller) holds every right the action needs itself.
		creator, person, group = "upstream-"+ns, "person-"+ns, "remediators-"+ns
		grant(ctx, creator, ns, createExecutions, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}})
	})
	create := func(name string) (string, error) {
		manifest := onBehalfOf(execution(ns, name, "keywords", `{replicas: 1}`, ""), person, group)
		return e2eutil.Kubectl(cluster.Kubeconfig, manifest, "create", "--as="+creator, "-f", "-")
	}
	stored := func(ctx context.Context, name string) bool {
		return !apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.KubernetesExecution{}))
	}
	mayImpersonate := func(ctx context.Context) {
		grant(ctx, creator, "",
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}, ResourceNames: []string{person}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"groups"}, Verbs: []string{"impersonate"}, ResourceNames: []string{group}})
	}

	It("is refused when the creator may not impersonate the user and groups it names", func(ctx SpecContext) {
		grant(ctx, person, ns, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}})
		out, err := create("bad-impersonation")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`metadata.annotations[kubernaut.io/on-behalf-of]: Forbidden: %s may not impersonate users %q (cluster-wide), impersonate groups %q (cluster-wide)`, creator, person, group)))
		Expect(stored(ctx, "bad-impersonation")).To(BeFalse())
		noJobs(ctx, ns)
	})

	It("lets the named user's rights decide, and records both identities", func(ctx SpecContext) {
		mayImpersonate(ctx)
		// The named user may not patch the target, though the creator may: refused.
		out, err := create("bad-person-lacks-patch")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target: Forbidden: %s may not get deployments.apps "web" in namespace %s, patch deployments.apps "web" in namespace %s, which action "keywords" would be granted`, person, ns, ns)))
		Expect(stored(ctx, "bad-person-lacks-patch")).To(BeFalse())
		noJobs(ctx, ns)

		// Admitted once the webhook's cached answers for the named user (a few seconds) expire.
		grant(ctx, person, ns, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}})
		Eventually(func() (string, error) { return create("for-person") }).Should(ContainSubstring("created"))
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "for-person"}, obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester).To(Equal(v1alpha1.UserInfo{Username: person, Groups: []string{group}}))
		Expect(obj.Spec.Admission.CreatedBy).NotTo(BeNil())
		Expect(obj.Spec.Admission.CreatedBy.Username).To(Equal(creator))
		Expect(obj.Spec.Admission.CreatedBy.Groups).To(ConsistOf("system:authenticated"))
		Eventually(func() v1alpha1.ExecutionPhase {
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseCompleted))
	})

	// The API server's requester policy holds without the webhooks: a record naming someone the
	// creator may not impersonate is refused, and so is one that leaves the creator out.
	It("is refused by the requester admission policy alone, without the webhooks", func(ctx SpecContext) {
		withoutExecutionWebhooks(ctx)
		record := fmt.Sprintf("  admission:\n    requester: {username: %s, groups: [%s]}\n    createdBy: {username: %s, groups: [system:authenticated]}", person, group, creator)
		manifest := onBehalfOf(execution(ns, "bad-forged", "keywords", `{replicas: 1}`, record), person, group)
		Eventually(func() string {
			out, _ := e2eutil.Kubectl(cluster.Kubeconfig, manifest, "create", "--as="+creator, "-f", "-")
			return out
		}).Should(ContainSubstring(fmt.Sprintf("ValidatingAdmissionPolicy 'kubernaut-executor-requester' with binding 'kubernaut-executor-requester' denied request: metadata.annotations[kubernaut.io/on-behalf-of]: Forbidden: %s may not impersonate user %s", creator, person)))
		Expect(stored(ctx, "bad-forged")).To(BeFalse())

		mayImpersonate(ctx)
		unrecorded := onBehalfOf(execution(ns, "bad-no-creator", "keywords", `{replicas: 1}`, fmt.Sprintf("  admission:\n    requester: {username: %s, groups: [%s]}", person, group)), person, group)
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, unrecorded, "create", "--as="+creator, "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf("spec.admission: Forbidden: an execution created on behalf of another user records that user (kubernaut.io/on-behalf-of and -groups) as the requester and its creator (%s) as createdBy", creator)))
		Expect(stored(ctx, "bad-no-creator")).To(BeFalse())
		noJobs(ctx, ns)
	})
})
