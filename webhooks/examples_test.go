package webhooks_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// exampleFile reads a file of examples/ as a user would apply it.
func exampleFile(name string) string {
	b, err := os.ReadFile(filepath.Join(e2eutil.RepoRoot(), "examples", name))
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// The example's image is a public kubectl image, which the local node agent cannot run (it runs
// only the project's own binaries): each attempt ends as ImagePullFailed. So this spec stops at
// what the executor does before the image runs: the template and an execution admitted through
// kubectl, the grant narrowed to the target, and the Job's argv, environment and image as the
// README describes them. Rendering and the ceiling check without a cluster are in
// examples/examples_test.go.
var _ = Describe("The kubectl-label example", Ordered, func() {
	BeforeAll(func(ctx SpecContext) {
		for _, f := range []string{"kubectl-label/ceiling.yaml", "kubectl-label/actiontemplate.yaml"} {
			out, err := apply(exampleFile(f))
			Expect(err).NotTo(HaveOccurred(), out)
		}
		DeferCleanup(func() {
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "delete", "--ignore-not-found",
				"actiontemplate/kubectl-label", "clusterrole/kubernaut-executor-ceiling-custom-kubectl-label")
			Expect(err).NotTo(HaveOccurred(), out)
		})
	})

	It("is admitted and Ready, and its dry run's Job runs kubectl with the argv rendered from the parameters", func(ctx SpecContext) {
		tpl := waitReady(ctx, "kubectl-label")
		Expect(tpl.Status.EffectiveRules).To(Equal(tpl.Spec.RBAC.Rules))

		ns, err := cluster.Namespace(ctx, "examples", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())
		// Watched, not polled: the Job of an attempt whose image cannot be pulled is deleted as
		// soon as the attempt's end is recorded.
		cs, err := kubernetes.NewForConfig(cluster.Config)
		Expect(err).NotTo(HaveOccurred())
		jobs, err := cs.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelExecution + "=label-web"})
		Expect(err).NotTo(HaveOccurred())
		defer jobs.Stop()
		manifest := strings.ReplaceAll(exampleFile("kubectl-label/execution.yaml"), "namespace: shop", "namespace: "+ns)
		out, err := apply(manifest)
		Expect(err).NotTo(HaveOccurred(), out)

		var job *batchv1.Job
		Eventually(func(g Gomega) {
			var e watch.Event
			g.Expect(jobs.ResultChan()).To(Receive(&e))
			g.Expect(e.Type).To(Equal(watch.Added))
			job, _ = e.Object.(*batchv1.Job)
		}).Should(Succeed())
		Expect(job).NotTo(BeNil())
		c := job.Spec.Template.Spec.Containers[0]
		Expect(c.Image).To(Equal("registry.k8s.io/kubectl:v1.34.1"))
		Expect(c.Command).To(Equal([]string{"/bin/kubectl"}))
		Expect(c.Args).To(Equal([]string{"label", "deployment", "web", "--namespace=" + ns, "team=payments", "--overwrite", "--dry-run=server"}))
		Expect(c.Env).To(ContainElements(
			corev1.EnvVar{Name: "HOME", Value: "/tmp"},
			corev1.EnvVar{Name: v1alpha1.EnvDryRun, Value: "true"},
			corev1.EnvVar{Name: v1alpha1.EnvActionParameters, Value: `{"key":"team","value":"payments"}`},
		))

		// The grant: get and patch on this Deployment alone, in its namespace.
		Eventually(func(g Gomega) {
			roles := &rbacv1.RoleList{}
			g.Expect(k8s.List(ctx, roles, client.InNamespace(ns), client.HasLabels{v1alpha1.LabelExecution})).To(Succeed())
			g.Expect(roles.Items).To(HaveLen(1))
			g.Expect(roles.Items[0].Rules).To(Equal([]rbacv1.PolicyRule{{
				APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}, ResourceNames: []string{"web"},
			}}))
		}).Should(Succeed())

		// Here the image does not run: the attempt ends as ImagePullFailed.
		Eventually(func(g Gomega) {
			obj := &v1alpha1.KubernetesExecution{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "label-web"}, obj)).To(Succeed())
			g.Expect(obj.Status.Attempts).NotTo(BeEmpty())
			g.Expect(obj.Status.Attempts[0].Reason).To(Equal(v1alpha1.ReasonImagePullFailed))
		}).Should(Succeed())
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "-n", ns, "delete", "kexec", "label-web", "--wait=false")
		Expect(err).NotTo(HaveOccurred(), out)
	})

	It("refuses a key that kubectl would read as a flag, naming the parameter", func(ctx SpecContext) {
		ns, err := cluster.Namespace(ctx, "examples", nil)
		Expect(err).NotTo(HaveOccurred())
		manifest := strings.ReplaceAll(exampleFile("kubectl-label/execution.yaml"), "namespace: shop", "namespace: "+ns)
		out, err := apply(strings.Replace(manifest, "key: team", "key: --all", 1))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`spec.action.parameters.key: Invalid value: "--all": must match the pattern`))
	})
})
