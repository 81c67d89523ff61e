package webhooks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// keywordsTemplate uses every JSON Schema keyword the predefined templates use.
const keywordsTemplate = `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata:
  name: keywords
spec:
  image: kubernaut-actions
  args: ["test-action"]
  targetKinds: [Deployment]
  maxTimeout: 10m
  rbac:
    rules:
      - apiGroups: [apps]
        resources: [deployments]
        verbs: [get, patch]
  parameters:
    type: object
    additionalProperties: false
    required: [replicas]
    properties:
      replicas: {type: integer, minimum: 0, maximum: 10}
      mode: {type: string, enum: [fast, safe]}
      container: {type: string, pattern: "^[a-z0-9-]+$"}
      output: {type: string}
`

func apply(manifest string, args ...string) (string, error) {
	return e2eutil.Kubectl(cluster.Kubeconfig, manifest, append([]string{"apply", "-f", "-"}, args...)...)
}

func execution(ns, name, actionType, params, extra string) string {
	return e2eutil.ExecutionManifest(ns, name, actionType, params, ns, "Deployment", "web", extra)
}

func template(name, body string) string {
	return fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata: {name: %s}
spec:
  image: kubernaut-actions
  targetKinds: [Deployment]
%s`, name, body)
}

func waitReady(ctx context.Context, name string) *v1alpha1.ActionTemplate {
	tpl := &v1alpha1.ActionTemplate{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, tpl)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}).Should(Succeed())
	return tpl
}

func jobsIn(ctx context.Context, ns string) []batchv1.Job {
	jobs := &batchv1.JobList{}
	Expect(k8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
	return jobs.Items
}

// noJobs checks that nothing was admitted, so nothing can run.
func noJobs(ctx context.Context, ns string) {
	executions := &v1alpha1.KubernetesExecutionList{}
	Expect(k8s.List(ctx, executions, client.InNamespace(ns))).To(Succeed())
	for _, e := range executions.Items {
		Expect(e.Name).NotTo(HavePrefix("bad"), "a rejected execution was stored")
	}
	Consistently(func() []batchv1.Job { return jobsIn(ctx, ns) }, "500ms").Should(BeEmpty())
}

var _ = Describe("Admission through kubectl", Ordered, ContinueOnFailure, func() {
	var ns string
	BeforeAll(func(ctx SpecContext) {
		out, err := apply(keywordsTemplate)
		Expect(err).NotTo(HaveOccurred(), out)
		waitReady(ctx, "keywords")
	})
	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = cluster.Namespace(ctx, "admission", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{"app": "web"}
		Expect(k8s.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}}}}},
		})).To(Succeed())
	})

	It("admits a valid execution, which then completes", func(ctx SpecContext) {
		out, err := apply(execution(ns, "valid", "keywords", `{replicas: 2, mode: safe, container: web, output: fine}`, ""))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func() v1alpha1.ExecutionPhase {
			obj := &v1alpha1.KubernetesExecution{}
			_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "valid"}, obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseCompleted))
	})

	DescribeTable("rejects a bad execution, names the field and the reason, and creates no Job",
		func(ctx SpecContext, params, extra string, want ...string) {
			out, err := apply(execution(ns, "bad", "keywords", params, extra))
			Expect(err).To(HaveOccurred(), out)
			for _, w := range want {
				Expect(out).To(ContainSubstring(w))
			}
			noJobs(ctx, ns)
		},
		Entry("type", `{replicas: "three"}`, "", `spec.action.parameters.replicas: Invalid value: "three": must be of type integer`),
		Entry("required", `{mode: fast}`, "", `spec.action.parameters.replicas: Required value`),
		Entry("minimum", `{replicas: -1}`, "", `spec.action.parameters.replicas: Invalid value: -1: must be greater than or equal to 0`),
		Entry("maximum", `{replicas: 11}`, "", `spec.action.parameters.replicas: Invalid value: 11: must be less than or equal to 10`),
		Entry("enum", `{replicas: 1, mode: reckless}`, "", `spec.action.parameters.mode: Unsupported value: "reckless": supported values: "fast", "safe"`),
		Entry("pattern", `{replicas: 1, container: "Web_1"}`, "", `spec.action.parameters.container: Invalid value: "Web_1": must match the pattern ^[a-z0-9-]+$`),
		Entry("additionalProperties", `{replicas: 1, replica: 2}`, "", `spec.action.parameters.replica: Forbidden: the action has no such parameter`),
		Entry("several errors at once, all reported", `{replicas: -1, mode: x, extra: true}`, "",
			`spec.action.parameters.replicas: Invalid value: -1`, `spec.action.parameters.mode: Unsupported value: "x"`, `spec.action.parameters.extra: Forbidden`),
		Entry("parameters not an object", `[1, 2]`, "", `spec.action.parameters: Invalid value: "array": spec.action.parameters in body must be of type object`),
		Entry("parameters too large", fmt.Sprintf(`{replicas: 1, output: %q}`, strings.Repeat("x", 40*1024)), "", `spec.action.parameters: Too long: may not be more than 32768 bytes`),
		Entry("timeout above the template's maximum", `{replicas: 1}`, "  timeout: 2h", `spec.timeout: Invalid value: "2h0m0s": must be at most 10m0s, the maxTimeout of action "keywords"`),
	)

	// An upstream controller sends a zero timeout for a step that has none: the template's
	// default applies (5m for keywords), not an immediate timeout.
	It("admits timeout: 0s, and the execution runs with the template's default timeout", func(ctx SpecContext) {
		out, err := apply(execution(ns, "zero-timeout", "keywords", `{replicas: 1}`, "  timeout: 0s\n  queueTimeout: 0s"))
		Expect(err).NotTo(HaveOccurred(), out)
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "zero-timeout"}, obj)).To(Succeed())
		Expect(obj.Spec.Timeout.Duration).To(BeZero())
		Eventually(func() v1alpha1.ExecutionPhase {
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseCompleted))
		jobs := jobsIn(ctx, ns)
		Expect(jobs).To(HaveLen(1))
		Expect(*jobs[0].Spec.ActiveDeadlineSeconds).To(BeNumerically("~", 300, 60), "the deadline is the template's default timeout")
	})

	It("rejects a negative timeout, naming the field", func(ctx SpecContext) {
		out, err := apply(execution(ns, "bad-negative-timeout", "keywords", `{replicas: 1}`, "  timeout: -1s"))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.timeout: Invalid value: "-1s": must not be negative (0s means the default)`))
		noJobs(ctx, ns)
	})

	// kube-system, kube-public, kube-node-lease and the manager's own namespace are protected by
	// default (--protected-namespaces); a template opts in with spec.allowProtectedNamespaces.
	It("rejects a target in a protected namespace, and admits it for a template that allows protected namespaces", func(ctx SpecContext) {
		for _, protected := range []string{"kube-system", "kubernaut-system"} {
			out, err := apply(e2eutil.ExecutionManifest(ns, "bad-protected", "keywords", `{replicas: 1}`, protected, "Deployment", "web"))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target.namespace: Forbidden: namespace %s is protected (the executor's --protected-namespaces); the action's template does not allow protected namespaces (spec.allowProtectedNamespaces)`, protected)))
		}
		noJobs(ctx, ns)
		roles := &rbacv1.RoleList{}
		Expect(k8s.List(ctx, roles, client.InNamespace("kube-system"), client.HasLabels{v1alpha1.LabelExecution})).To(Succeed())
		Expect(roles.Items).To(BeEmpty(), "no grant in kube-system")

		out, err := apply(strings.Replace(keywordsTemplate, "name: keywords", "name: keywords-system", 1) + "  allowProtectedNamespaces: true\n")
		Expect(err).NotTo(HaveOccurred(), out)
		waitReady(ctx, "keywords-system")
		target := e2eutil.IdleDeployment("kube-system", "web-"+ns)
		Expect(k8s.Create(ctx, target)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(k8s.Delete(ctx, target)).To(Succeed()) })
		out, err = apply(e2eutil.ExecutionManifest(ns, "system", "keywords-system", `{replicas: 1}`, "kube-system", "Deployment", target.Name))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func() v1alpha1.ExecutionPhase {
			obj := &v1alpha1.KubernetesExecution{}
			_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "system"}, obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseCompleted))
	})

	It("rejects an unknown action type", func(ctx SpecContext) {
		out, err := apply(execution(ns, "unknown", "no-such-action", `{}`, ""))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`The KubernetesExecution "unknown" is invalid`))
		Expect(out).To(ContainSubstring(`spec.action.type: Not found: "no-such-action"`))
		noJobs(ctx, ns)
	})

	It("rejects a wrong target kind and a missing target name", func(ctx SpecContext) {
		out, err := apply(strings.Replace(execution(ns, "kind", "keywords", `{replicas: 1}`, ""), "resourceKind: Deployment", "resourceKind: Node", 1))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target.resourceKind: Unsupported value: "Node": supported values: "Deployment"`))
		out, err = apply(strings.Replace(execution(ns, "noname", "keywords", `{replicas: 1}`, ""), ", resourceName: web", "", 1))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target.resourceName: Required value`))
		noJobs(ctx, ns)
	})

	// A spec change is refused by the API server itself, with the CRD's CEL rule (self == oldSelf
	// on spec): the API server checks the object against the CRD's schema after the mutating
	// webhooks and before the validating ones, so the validating webhook is never called. Its
	// own check, behind the rule, is tested where it answers: see the next spec.
	It("rejects a change of the spec after creation with the CRD's CEL rule, before the validating webhook", func(ctx SpecContext) {
		out, err := apply(execution(ns, "fixed", "keywords", `{replicas: 1}`, ""))
		Expect(err).NotTo(HaveOccurred(), out)
		// Once the manager has nothing left to write, the patch meets no conflict, which would
		// make the API server run admission again.
		Eventually(func(g Gomega) {
			obj := &v1alpha1.KubernetesExecution{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fixed"}, obj)).To(Succeed())
			g.Expect(obj.Status.Phase.IsTerminal()).To(BeTrue())
			g.Expect(meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionAudited)).NotTo(BeNil())
			g.Expect(obj.Finalizers).To(BeEmpty())
		}).Should(Succeed())
		before := webhookUpdates()
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "patch", "kexec", "fixed", "--type=merge", "-p", `{"spec":{"action":{"parameters":{"replicas":5}}}}`)
		Expect(err).To(HaveOccurred(), out)
		// CEL's form ("Invalid value", the rule's message); the webhook would answer "Forbidden".
		Expect(out).To(ContainSubstring(`The KubernetesExecution "fixed" is invalid: spec: Invalid value: spec is immutable; create a new KubernetesExecution instead`))
		after := webhookUpdates()
		Expect(after["mkubernetesexecution.kubernaut.io"]).To(Equal(before["mkubernetesexecution.kubernaut.io"]+1), "the request went through the mutating webhook")
		Expect(after["vkubernetesexecution.kubernaut.io"]).To(Equal(before["vkubernetesexecution.kubernaut.io"]), "the validating webhook was not called")
	})

	// Behind the CEL rule (a CRD installed without it, a webhook configuration without its match
	// conditions, a future version of the API server that validates in another order), the
	// validating webhook refuses a spec change itself. AdmissionReviews go straight to the
	// webhook server the manager runs, at the address and with the CA the API server uses.
	It("refuses, at the validating webhook itself, an UPDATE that changes the spec, and admits one that does not", func(ctx SpecContext) {
		out, err := apply(execution(ns, "direct", "keywords", `{replicas: 1}`, ""))
		Expect(err).NotTo(HaveOccurred(), out)
		stored := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "direct"}, stored)).To(Succeed())
		Expect(stored.Spec.Admission).NotTo(BeNil(), "the mutating webhook recorded the requester")

		changed := stored.DeepCopy()
		changed.Spec.Action.Parameters = &apiextensionsv1.JSON{Raw: []byte(`{"replicas":5}`)}
		resp := reviewUpdate(ctx, stored, changed)
		Expect(resp.Allowed).To(BeFalse(), "a spec change was admitted")
		Expect(resp.Result).NotTo(BeNil())
		Expect(resp.Result.Code).To(BeEquivalentTo(http.StatusUnprocessableEntity))
		Expect(resp.Result.Reason).To(Equal(metav1.StatusReasonInvalid))
		Expect(resp.Result.Details).NotTo(BeNil())
		Expect(resp.Result.Details.Causes).To(Equal([]metav1.StatusCause{{
			Type: metav1.CauseType(field.ErrorTypeForbidden), Field: "spec",
			Message: "Forbidden: spec is immutable; create a new KubernetesExecution instead",
		}}))

		relabelled := stored.DeepCopy()
		relabelled.Labels = map[string]string{"team": "sre"}
		relabelled.Finalizers = append(relabelled.Finalizers, "example.com/hold")
		resp = reviewUpdate(ctx, stored, relabelled)
		Expect(resp.Allowed).To(BeTrue(), "an update that leaves the spec alone was refused: %+v", resp.Result)
	})

	// Every update of an execution that leaves its spec alone (the manager's finalizer patches,
	// a label) would otherwise cost two webhook round trips: the webhooks' match conditions leave
	// them to the API server alone. The API server's own metrics count the calls.
	It("calls the webhooks for a spec change but not for an update that leaves the spec alone", func(ctx SpecContext) {
		out, err := apply(execution(ns, "labelled", "keywords", `{replicas: 1}`, ""))
		Expect(err).NotTo(HaveOccurred(), out)
		before := webhookUpdates()
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "label", "kexec", "labelled", "team=sre")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(webhookUpdates()).To(Equal(before), "a label changed nothing the webhooks check")

		// A spec change is still seen: the defaulting webhook puts the stored requester record
		// back, and the validating webhook, which sees the spec as it was, is left out too.
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "patch", "kexec", "labelled", "--type=merge",
			"-p", `{"spec":{"admission":{"requester":{"username":"someone-else"}}}}`)
		Expect(err).NotTo(HaveOccurred(), out)
		after := webhookUpdates()
		Expect(after["mkubernetesexecution.kubernaut.io"]).To(Equal(before["mkubernetesexecution.kubernaut.io"] + 1))
		Expect(after["vkubernetesexecution.kubernaut.io"]).To(Equal(before["vkubernetesexecution.kubernaut.io"]))
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "labelled"}, obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester.Username).NotTo(Equal("someone-else"))
	})

	It("rejects a requester who may not act on the target themselves, naming the missing permission", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "can-request"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"create", "get"}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
			},
		})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "can-request"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
		})).To(Succeed())
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, execution(ns, "deputy", "keywords", `{replicas: 1}`, ""), "create", "--as=alice", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target: Forbidden: alice may not patch deployments.apps "web" in namespace %s, which action "keywords" would be granted on Deployment %s/web`, ns, ns)))
		noJobs(ctx, ns)
	})

	It("rejects an execution naming a target cluster nobody registered, and one its requester may not execute on, naming the field", func(ctx SpecContext) {
		inCluster := func(name string) string {
			return strings.Replace(execution(ns, name, "keywords", `{replicas: 1}`, ""), "resourceName: web}", "resourceName: web, cluster: nowhere}", 1)
		}
		out, err := apply(inCluster("nowhere"))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target.cluster: Invalid value: "nowhere": no such target cluster; registered: []`))

		Expect(k8s.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "can-request-here"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"create", "get"}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}},
			},
		})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "can-request-here"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}},
		})).To(Succeed())
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, inCluster("elsewhere"), "create", "--as=bob", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target.cluster: Forbidden: bob may not execute on cluster "nowhere": that takes the verb execute on clusters.kubernetesexecution.kubernaut.io named "nowhere"`))
		noJobs(ctx, ns)
	})

	It("checks a requester's rights on a target cluster as the identity its Secret maps them to, and rejects one it does not name", func(ctx SpecContext) {
		target, err := e2eutil.StartClusterWith(ctx, "east", localcluster.Options{CRDDirs: []string{}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(target.Stop()).To(Succeed()) })
		targetK8s, err := client.New(target.Config, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		config := filepath.Join(e2eutil.RepoRoot(), "config")
		out, err := e2eutil.Kubectl(target.Kubeconfig, "", "apply", "-f", filepath.Join(config, "rbac", "namespace.yaml"),
			"-f", filepath.Join(config, "rbac", "ceiling.yaml"), "-f", filepath.Join(config, "target", "target.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(targetK8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(targetK8s.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())
		token := &corev1.Secret{}
		Eventually(func(g Gomega) {
			g.Expect(targetK8s.Get(ctx, client.ObjectKey{Namespace: e2eutil.Namespace, Name: "kubernaut-executor-hub-token"}, token)).To(Succeed())
			g.Expect(token.Data).To(HaveKey("token"))
		}).Should(Succeed())

		inEast := func(name string) string {
			return strings.Replace(execution(ns, name, "keywords", `{replicas: 1}`, ""), "resourceName: web}", "resourceName: web, cluster: east}", 1)
		}
		// erin is erin-east there; frank is not in the map, though a frank there has the same rights.
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: "east", Labels: map[string]string{v1alpha1.LabelCluster: "true"}},
			Data: map[string][]byte{
				v1alpha1.ClusterSecretServer: []byte(target.Config.Host), v1alpha1.ClusterSecretCA: token.Data["ca.crt"],
				v1alpha1.ClusterSecretToken: token.Data["token"], v1alpha1.ClusterSecretIdentities: []byte("users:\n  erin: erin-east\n"),
			},
		}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(k8s.Delete(ctx, secret)).To(Succeed())
			// Later specs expect no cluster to be registered.
			Eventually(func() string {
				out, _ := apply(inEast("probe"), "--dry-run=server")
				return out
			}).Should(ContainSubstring("no such target cluster; registered: []"))
		})
		deployments := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}
		for _, u := range []string{"erin", "frank"} {
			Expect(e2eutil.GrantUser(ctx, k8s, u, ns, rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"create", "get"}})).To(Succeed())
			Expect(e2eutil.GrantUser(ctx, k8s, u, "", rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"clusters"}, ResourceNames: []string{"east"}, Verbs: []string{"execute"}})).To(Succeed())
		}
		for _, u := range []string{"erin-east", "frank"} {
			Expect(e2eutil.GrantUser(ctx, targetK8s, u, ns, deployments)).To(Succeed())
		}

		By("erin, checked there as erin-east (a server-side dry run: every webhook runs, nothing is stored)")
		Eventually(func() (string, error) {
			return e2eutil.Kubectl(cluster.Kubeconfig, inEast("as-erin"), "create", "--dry-run=server", "--as=erin", "-f", "-")
		}).Should(ContainSubstring("created (server dry run)"))

		By("frank, whom the map does not name")
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, inEast("bad-frank"), "create", "--as=frank", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target.cluster: Forbidden: frank has no identity on cluster "east": the identity map of its Secret names neither frank nor any of their groups`))

		By("erin, once erin-east has lost the right there")
		Expect(targetK8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grant-erin-east"}})).To(Succeed())
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, inEast("bad-erin"), "create", "--as=erin", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.target: Forbidden: erin (as erin-east on cluster "east") may not get deployments.apps "web" in namespace ` + ns))
		noJobs(ctx, ns)
		jobs := &batchv1.JobList{}
		Expect(targetK8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
		Expect(jobs.Items).To(BeEmpty(), "no Job on the target")
	})

	It("rejects an execution of a template that is not ready", func(ctx SpecContext) {
		fragment := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-shrinking", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}},
		}
		Expect(k8s.Create(ctx, fragment)).To(Succeed())
		Eventually(func() (string, error) {
			return apply(template("shrinking", "  rbac:\n    rules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]"))
		}).Should(ContainSubstring("created"))
		waitReady(ctx, "shrinking")
		// The administrator takes the permission out of the ceiling: the template is no longer ready.
		Expect(k8s.Delete(ctx, fragment)).To(Succeed())
		Eventually(func() bool {
			tpl := &v1alpha1.ActionTemplate{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: "shrinking"}, tpl)).To(Succeed())
			return meta.IsStatusConditionFalse(tpl.Status.Conditions, v1alpha1.ConditionReady)
		}).Should(BeTrue())
		out, err := apply(execution(ns, "not-ready", "shrinking", `{}`, ""))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.type: Invalid value: "shrinking": ActionTemplate "shrinking" is not ready: rules not covered by the RBAC ceiling`))
		noJobs(ctx, ns)
	})

	DescribeTable("rejects a template that cannot work, naming the field",
		func(name, body string, want ...string) {
			out, err := apply(template(name, body))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(`The ActionTemplate %q is invalid`, name))
			for _, w := range want {
				Expect(out).To(ContainSubstring(w))
			}
		},
		Entry("invalid schema", "bad-schema", "  parameters: {type: object, properties: {n: {type: integr}}}",
			`spec.parameters: Invalid value: "": the JSON Schema does not compile`),
		Entry("wildcard rule", "wildcard", "  rbac:\n    rules: [{apiGroups: [apps], resources: ['*'], verbs: [get]}]",
			`spec.rbac.rules[0].resources[0]: Forbidden: wildcard "*"`),
		Entry("escalating rule", "escalating", "  rbac:\n    rules: [{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [bind, escalate]}]",
			`spec.rbac.rules[0].verbs[0]: Forbidden: verb "bind" lets the action raise privileges`, `spec.rbac.rules[0].verbs[1]: Forbidden: verb "escalate"`),
		Entry("above the ceiling", "greedy", "  rbac:\n    rules: [{apiGroups: [''], resources: [secrets], verbs: [get]}]",
			`spec.rbac.rules: Forbidden: not covered by the RBAC ceiling "kubernaut-executor-ceiling": get secrets`),
		Entry("args that do not parse", "unparsable", "  args: ['{{ .Parameters.n ']",
			`spec.args[0]: Invalid value: "{{ .Parameters.n ": template: args:1: unclosed action`),
		Entry("a non-hermetic function", "leaky", "  args: ['{{ env \"HOME\" }}']",
			`spec.args[0]: Invalid value: "{{ env \"HOME\" }}": template: args:1:3: function "env" is not allowed in action templates: it reads the manager's environment`),
		Entry("an executor variable in env", "spoofing", "  env: [{name: TARGET_NAME, value: x}]",
			`spec.env[0].name: Forbidden: TARGET_NAME is set by the executor`),
	)
})

// reviewUpdate sends an AdmissionReview of an UPDATE from old to obj, by the cluster's
// administrator, straight to the KubernetesExecution validating webhook: at the address the
// installed configuration names, over TLS verified with the CA bundle it gives the API server.
func reviewUpdate(ctx context.Context, old, obj *v1alpha1.KubernetesExecution) *admissionv1.AdmissionResponse {
	GinkgoHelper()
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: "validating-webhook-configuration"}, config)).To(Succeed())
	var hook *admissionregistrationv1.ValidatingWebhook
	for i := range config.Webhooks {
		if config.Webhooks[i].Name == "vkubernetesexecution.kubernaut.io" {
			hook = &config.Webhooks[i]
		}
	}
	Expect(hook).NotTo(BeNil(), "no vkubernetesexecution.kubernaut.io webhook installed")
	Expect(hook.ClientConfig.URL).NotTo(BeNil())
	u, err := url.Parse(*hook.ClientConfig.URL)
	Expect(err).NotTo(HaveOccurred())
	u.Path = path.Clean(u.Path)
	Expect(u.Host).To(Equal(net.JoinHostPort(cluster.Webhook.Host, strconv.Itoa(cluster.Webhook.Port))), "the webhook server the manager runs")
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(hook.ClientConfig.CABundle)).To(BeTrue(), "the CA bundle holds a certificate")

	raw := func(o *v1alpha1.KubernetesExecution) runtime.RawExtension {
		o = o.DeepCopy()
		o.APIVersion, o.Kind = v1alpha1.GroupVersion.String(), "KubernetesExecution"
		b, err := json.Marshal(o)
		Expect(err).NotTo(HaveOccurred())
		return runtime.RawExtension{Raw: b}
	}
	gv := v1alpha1.GroupVersion
	uid := types.UID(fmt.Sprintf("direct-%s-%d", obj.Name, time.Now().UnixNano()))
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       uid,
			Kind:      metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: "KubernetesExecution"},
			Resource:  metav1.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: "kubernetesexecutions"},
			Namespace: obj.Namespace, Name: obj.Name, Operation: admissionv1.Update,
			UserInfo: authenticationv1.UserInfo{Username: "local-admin", Groups: []string{"system:masters", "system:authenticated"}},
			Object:   raw(obj), OldObject: raw(old),
		},
	})
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	review := &admissionv1.AdmissionReview{}
	Expect(json.NewDecoder(resp.Body).Decode(review)).To(Succeed())
	Expect(review.Response).NotTo(BeNil())
	Expect(review.Response.UID).To(Equal(uid), "the answer is to this request")
	return review.Response
}

// webhookUpdates returns how many UPDATE requests the API server has sent to each webhook, by
// webhook name, from its own metrics.
func webhookUpdates() map[string]int {
	out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "get", "--raw", "/metrics")
	Expect(err).NotTo(HaveOccurred())
	const metric = "apiserver_admission_webhook_admission_duration_seconds_count{"
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, metric) || !strings.Contains(line, `operation="UPDATE"`) {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, metric), "} ")
		for _, l := range strings.Split(labels, ",") {
			if name, ok := strings.CutPrefix(l, `name="`); ok {
				n, err := strconv.Atoi(strings.TrimSpace(value))
				Expect(err).NotTo(HaveOccurred(), line)
				counts[strings.TrimSuffix(name, `"`)] += n
			}
		}
	}
	return counts
}
