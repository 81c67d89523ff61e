package webhooks_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// grant gives user the rules, in namespace ns or cluster-wide when ns is "".
func grant(ctx context.Context, user, ns string, rules ...rbacv1.PolicyRule) {
	Expect(e2eutil.GrantUser(ctx, k8s, user, ns, rules...)).To(Succeed())
}

// nodeExecution asks for action on the spare node; namespace goes into the target when set.
func nodeExecution(ns, name, action, targetNamespace string) string {
	return e2eutil.ExecutionManifest(ns, name, action, "", targetNamespace, "Node", localcluster.SpareNodeName)
}

// nodeUnchanged checks that no execution was stored in ns and the spare node is still
// schedulable.
func nodeUnchanged(ctx context.Context, ns string) {
	list := &v1alpha1.KubernetesExecutionList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	Expect(list.Items).To(BeEmpty())
	Consistently(func(g Gomega) {
		node := &corev1.Node{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: localcluster.SpareNodeName}, node)).To(Succeed())
		g.Expect(node.Spec.Unschedulable).To(BeFalse())
	}, "1s").Should(Succeed())
}

var createExecutions = rbacv1.PolicyRule{
	APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"create", "get"},
}

var _ = Describe("Tenants through kubectl", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = cluster.Namespace(ctx, "tenant", nil)
		Expect(err).NotTo(HaveOccurred())
		waitReady(ctx, "cordon-node")
		waitReady(ctx, "drain-node")
	})
	asUser := func(user, manifest string) (string, error) {
		return e2eutil.Kubectl(cluster.Kubeconfig, manifest, "create", "--as="+user, "-f", "-")
	}

	It("rejects a namespace admin's node action, with or without their namespace, and the node stays schedulable", func(ctx SpecContext) {
		admin := "ns-admin-" + ns
		grant(ctx, admin, ns, rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}})

		out, err := asUser(admin, nodeExecution(ns, "cordon-in-ns", "cordon-node", ns))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target.namespace: Invalid value: %q: Node is cluster-scoped: leave the namespace empty`, ns)))

		out, err = asUser(admin, nodeExecution(ns, "cordon", "cordon-node", ""))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target: Forbidden: %s may not get nodes %q (cluster-wide), patch nodes %q (cluster-wide)`,
			admin, localcluster.SpareNodeName, localcluster.SpareNodeName)))
		nodeUnchanged(ctx, ns)
	})

	It("rejects drain-node for a user who may patch the node but may not list or evict pods", func(ctx SpecContext) {
		user := "node-patcher-" + ns
		grant(ctx, user, ns, createExecutions)
		grant(ctx, user, "", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}})
		out, err := asUser(user, nodeExecution(ns, "drain", "drain-node", ""))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(fmt.Sprintf(`spec.action.target: Forbidden: %s may not create pods/eviction (cluster-wide), list pods (cluster-wide), which action "drain-node" would be granted`, user)))
		nodeUnchanged(ctx, ns)

		// The same user may cordon: every permission of cordon-node's grant is theirs.
		out, err = asUser(user, nodeExecution(ns, "cordon", "cordon-node", ""))
		Expect(err).NotTo(HaveOccurred(), out)
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cordon"}, obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester.Username).To(Equal(user), "the webhook recorded who asked")
		Eventually(func() v1alpha1.ExecutionPhase {
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseCompleted))
		DeferCleanup(func(ctx SpecContext) {
			node := &corev1.Node{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: localcluster.SpareNodeName}, node)).To(Succeed())
			node.Spec.Unschedulable = false
			Expect(k8s.Update(ctx, node)).To(Succeed())
		})
	})

	It("replaces a requester the client sends with the user who sent it", func(ctx SpecContext) {
		out, err := apply(keywordsTemplate)
		Expect(err).NotTo(HaveOccurred(), out)
		waitReady(ctx, "keywords")
		user := "forger-" + ns
		grant(ctx, user, ns, createExecutions, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}})
		manifest := execution(ns, "forged", "keywords", `{replicas: 1}`, "  admission:\n    requester: {username: kubernetes-admin, groups: [system:masters]}")
		out, err = asUser(user, manifest)
		Expect(err).NotTo(HaveOccurred(), out)
		obj := &v1alpha1.KubernetesExecution{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "forged"}, obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester.Username).To(Equal(user))
		Expect(obj.Spec.Admission.Requester.Groups).To(ConsistOf("system:authenticated"))

		// Nor can it be changed or dropped afterwards, by anyone.
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "patch", "kexec", "forged", "--type=merge",
			"-p", `{"spec":{"admission":{"requester":{"username":"kubernetes-admin"}}}}`)
		Expect(err).NotTo(HaveOccurred(), out, "the webhook keeps the stored record, so the spec is unchanged")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		Expect(obj.Spec.Admission.Requester.Username).To(Equal(user))
	})

	It("rejects a template that would stall admission, quickly and naming the function", func(ctx SpecContext) {
		start := time.Now()
		out, err := apply(template("stall", `  args: ['{{ repeat 1500000000 "x" }}']`))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.args[0]: Invalid value`))
		Expect(out).To(ContainSubstring(`function "repeat" is not allowed`))
		Expect(out).NotTo(ContainSubstring("InternalError"))
		Expect(time.Since(start)).To(BeNumerically("<", 4*time.Second))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "stall"}, &v1alpha1.ActionTemplate{}))).To(BeTrue())
	})

	DescribeTable("rejects a parameter schema that reaches outside itself",
		func(ctx SpecContext, name, ref string) {
			out, err := apply(template(name, fmt.Sprintf("  parameters: {type: object, properties: {count: {$ref: %q}}}", ref)))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(`spec.parameters.properties.count.$ref: Forbidden`))
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.ActionTemplate{}))).To(BeTrue())
		},
		Entry("remote", "remote-ref", "https://schemas.example.com/n.json"),
		Entry("file", "file-ref", "file://"+filepath.Join(os.TempDir(), "n.json")),
	)
})
