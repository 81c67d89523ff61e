// Package helm installs the chart with helm on the local control plane, with a pod network so
// that the manager runs from the chart's own Deployment and the webhook is reached through its
// Service, and checks install, upgrade and uninstall.
package helm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

var (
	cluster *localcluster.Cluster
	k8s     client.Client
)

const release, namespace = "kubernaut-executor", "kubernaut-system"

func TestHelm(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Helm chart on the local control plane")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	SetDefaultEventuallyTimeout(90 * time.Second)
	SetDefaultEventuallyPollingInterval(500 * time.Millisecond)
	var err error
	cluster, err = e2eutil.StartClusterWith(ctx, "helm", localcluster.Options{PodNetwork: true, CRDDirs: []string{}})
	Expect(err).NotTo(HaveOccurred())
	scheme := e2eutil.Scheme()
	Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(3*time.Minute))

var _ = AfterSuite(func() {
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
})

// helm runs the helm CLI built by the Makefile against the local control plane.
func helm(args ...string) (string, error) {
	bin := filepath.Join(e2eutil.BinDir(), "helm")
	cmd := exec.Command(bin, args...)
	work := filepath.Join(e2eutil.RepoRoot(), ".work", "helm")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig,
		"HELM_CACHE_HOME="+work+"/cache", "HELM_CONFIG_HOME="+work+"/config", "HELM_DATA_HOME="+work+"/data")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubernaut runs the kubectl plugin built by the Makefile against the local control plane.
func kubernaut(args ...string) (string, error) {
	args = append([]string{"--kubeconfig", cluster.Kubeconfig, "--cache-dir", GinkgoT().TempDir()}, args...)
	out, err := exec.Command(filepath.Join(e2eutil.BinDir(), "kubectl-kubernaut"), args...).CombinedOutput() //nolint:gosec // G204: the plugin built by make build.
	return string(out), err
}

func chartArgs(verb string, extra ...string) []string {
	args := []string{verb, release, filepath.Join(e2eutil.RepoRoot(), "charts", "kubernaut-executor"), "-n", namespace,
		"--set", "manager.image.tag=test", "--set", "executor.actionImage.tag=test", "--wait", "--timeout", "120s"}
	return append(args, extra...)
}

func templateReady(ctx context.Context, name string) func(Gomega) {
	return func(g Gomega) {
		tpl := &v1alpha1.ActionTemplate{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, tpl)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}
}

func gone(ctx context.Context, obj client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }
}

var _ = Describe("helm install, upgrade and uninstall", Ordered, func() {
	It("refuses values with a typo or a wrong type, with the schema's message", func() {
		out, err := helm(chartArgs("install", "--create-namespace", "--set", "acitons.scale-deployment=false")...)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("additional properties 'acitons' not allowed"))
		out, err = helm(chartArgs("install", "--create-namespace", "--set-string", "manager.replicas=two")...)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("at '/manager/replicas': got string, want integer"))
	})

	It("installs with the default values: the manager is Ready and every predefined template too", func(ctx SpecContext) {
		out, err := helm(chartArgs("install", "--create-namespace")...)
		Expect(err).NotTo(HaveOccurred(), out)
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, d)).To(Succeed())
		Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(1))
		for _, name := range e2eutil.PredefinedActions() {
			Eventually(templateReady(ctx, name)).Should(Succeed(), name)
			// Created from the action's ConfigMap in the release's namespace, and marked so.
			tpl := &v1alpha1.ActionTemplate{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, tpl)).To(Succeed())
			Expect(tpl.Labels).To(HaveKeyWithValue(v1alpha1.LabelPredefinedAction, name))
			Expect(tpl.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationPredefinedSource, namespace+"/"+release+"-action-"+name))
			Expect(tpl.OwnerReferences).To(BeEmpty())
			fragment := &rbacv1.ClusterRole{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-executor-ceiling-" + name}, fragment)).To(Succeed())
			Expect(fragment.Annotations).NotTo(HaveKey("kubernaut.io/action-template"), "a fragment carries only rules")
		}
	})

	It("runs a scale-deployment execution applied with kubectl, and rejects a bad one through the webhook Service", func(ctx SpecContext) {
		demo := filepath.Join(e2eutil.RepoRoot(), "test", "demo")
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "create", "namespace", "kubernaut-demo")
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "-f", filepath.Join(demo, "bad-execution.yaml"))
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("spec.action.parameters.replicas: Invalid value: -1: must be greater than or equal to 0"))
		web, err := os.ReadFile(filepath.Join(demo, "web.yaml"))
		Expect(err).NotTo(HaveOccurred())
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, strings.ReplaceAll(string(web), ":dev", ":test"), "apply", "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "-f", filepath.Join(demo, "scale.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			obj := &v1alpha1.KubernetesExecution{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "kubernaut-demo", Name: "demo-scale-web"}, obj)).To(Succeed())
			g.Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseCompleted))
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "kubernaut-demo", Name: "web"}, d)).To(Succeed())
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
		}).Should(Succeed())
	})

	It("removes an action's template and RBAC when an upgrade disables it, and restores them when enabled again", func(ctx SpecContext) {
		tpl := &v1alpha1.ActionTemplate{}
		tpl.Name = "cordon-node"
		role := &rbacv1.ClusterRole{}
		role.Name = "kubernaut-action-cordon-node"
		fragment := &rbacv1.ClusterRole{}
		fragment.Name = "kubernaut-executor-ceiling-cordon-node"
		cm := &corev1.ConfigMap{}
		cm.Namespace, cm.Name = namespace, release+"-action-cordon-node"
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(role), role)).To(Succeed())
		secret := &corev1.Secret{}
		secretKey := client.ObjectKey{Namespace: namespace, Name: release + "-webhook-tls"}
		Expect(k8s.Get(ctx, secretKey, secret)).To(Succeed())
		expectServingCertificate(secret)
		installedTLS := secret.Data

		out, err := helm(chartArgs("upgrade", "--reuse-values", "--set", "actions.cordon-node=false")...)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(k8s.Get(ctx, secretKey, secret)).To(Succeed())
		Expect(secret.Data).To(HaveLen(len(installedTLS)))
		for k, v := range installedTLS {
			Expect(string(secret.Data[k])).To(Equal(string(v)), "an upgrade keeps the generated webhook Secret's %s", k)
		}
		Eventually(gone(ctx, fragment)).Should(BeTrue())
		Eventually(gone(ctx, cm)).Should(BeTrue())
		Eventually(gone(ctx, tpl)).Should(BeTrue())
		Eventually(gone(ctx, role)).Should(BeTrue())

		out, err = helm(chartArgs("upgrade", "--reuse-values", "--set", "actions.cordon-node=true")...)
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(templateReady(ctx, "cordon-node")).Should(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-action-cordon-node"}, &rbacv1.ClusterRole{})
		}).Should(Succeed())
	})

	It("installs the label-deployment example as docs/authoring.md says, and runs it: a dry run, then for real", func(ctx SpecContext) {
		example := filepath.Join(e2eutil.RepoRoot(), "examples", "label-deployment")
		// Step 5: the ceiling fragment through the chart's values.
		out, err := helm(chartArgs("upgrade", "--reuse-values", "-f", filepath.Join(example, "values.yaml"))...)
		Expect(err).NotTo(HaveOccurred(), out)
		fragment := &rbacv1.ClusterRole{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubernaut-executor-ceiling-custom-label-deployment"}, fragment)).To(Succeed())
		// Step 7: the template, applied once the ceiling holds its rules.
		Eventually(func() error {
			out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "-f", filepath.Join(example, "actiontemplate.yaml"))
			if err != nil {
				return errors.New(out)
			}
			return nil
		}).Should(Succeed())
		tpl := &v1alpha1.ActionTemplate{ObjectMeta: metav1.ObjectMeta{Name: "label-deployment"}}
		DeferCleanup(func(ctx SpecContext) {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, tpl))).To(Succeed())
			Eventually(gone(ctx, tpl)).Should(BeTrue())
		})
		Eventually(templateReady(ctx, "label-deployment")).Should(Succeed())
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})).To(Succeed())
		Expect(k8s.Create(ctx, e2eutil.IdleDeployment("shop", "web"))).To(Succeed())
		labels := func() map[string]string {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, d)).To(Succeed())
			return d.Labels
		}
		run := func(args ...string) *v1alpha1.KubernetesExecution {
			GinkgoHelper()
			args = append([]string{"run", "label-deployment", "--target", "deploy/web", "-n", "shop", "--wait"}, args...)
			out, err := kubernaut(args...)
			Expect(err).NotTo(HaveOccurred(), out)
			name := regexp.MustCompile(`(?m)^kubernetesexecution shop/(\S+) created$`).FindStringSubmatch(out)
			Expect(name).NotTo(BeNil(), out)
			obj := &v1alpha1.KubernetesExecution{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name[1]}, obj)).To(Succeed())
			Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseCompleted), out)
			return obj
		}

		dry := run("--param", "key=team", "--param", "value=payments", "--dry-run")
		Expect(dry.Status.Result.Output).To(Equal("would set label team=payments on Deployment shop/web"))
		// The API server drops a null in stored data: "before": null is stored as no "before".
		Expect(dry.Status.Result.Data.Raw).To(MatchJSON(`{"after":"payments","dryRun":true,"changed":true}`))
		Expect(labels()).NotTo(HaveKey("team"), "a dry run changed the Deployment")

		set := run("--param", "key=team", "--param", "value=payments")
		Expect(set.Status.Result.Output).To(Equal("set label team=payments on Deployment shop/web"))
		Expect(set.Status.Result.Data.Raw).To(MatchJSON(`{"after":"payments","dryRun":false,"changed":true}`))
		Expect(labels()).To(HaveKeyWithValue("team", "payments"))
		Expect(set.Status.Result.ResourceUsage).NotTo(BeNil(), "the SDK reports what the action used")

		again := run("--param", "key=team", "--param", "value=payments")
		Expect(again.Status.Result.Output).To(Equal("Deployment shop/web already has label team=payments"))
		Expect(again.Status.Result.Data.Raw).To(MatchJSON(`{"before":"payments","after":"payments","dryRun":false,"changed":false}`))

		removed := run("--param", "key=team", "--param", "remove=true")
		Expect(removed.Status.Result.Data.Raw).To(MatchJSON(`{"before":"payments","dryRun":false,"changed":true}`))
		Expect(labels()).NotTo(HaveKey("team"))

		// Neither a value nor remove: refused at admission, naming the field; nothing runs.
		out, err = kubernaut("run", "label-deployment", "--target", "deploy/web", "-n", "shop", "--param", "key=team")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("spec.action.parameters.value: Required value"))
		executions := &v1alpha1.KubernetesExecutionList{}
		Expect(k8s.List(ctx, executions, client.InNamespace("shop"))).To(Succeed())
		Expect(executions.Items).To(HaveLen(4))
	})

	It("uninstalls everything but the CRDs, promptly, with a ceiling fragment an administrator added", func(ctx SpecContext) {
		// An administrator's fragment for a custom action, outside the release: it stays, and the
		// pre-delete hook must not wait for the ceiling to lose its rules.
		custom := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "admin-custom-fragment", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/scale"}, Verbs: []string{"get", "update"}}},
		}
		Expect(k8s.Create(ctx, custom)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, custom))).To(Succeed()) })
		ceiling := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling"}}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ceiling), ceiling)).To(Succeed())
			g.Expect(ceiling.Rules).To(ContainElement(custom.Rules[0]))
		}).Should(Succeed())

		start := time.Now()
		out, err := helm("uninstall", release, "-n", namespace, "--timeout", "90s")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(time.Since(start)).To(BeNumerically("<", time.Minute), "helm uninstall waited for the administrator's fragment")
		Eventually(gone(ctx, ceiling)).Should(BeTrue())
		// Nothing writes the ceiling back once Helm has deleted it.
		Consistently(gone(ctx, ceiling), 5*time.Second).Should(BeTrue())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(custom), custom)).To(Succeed(), "the administrator's fragment stays")
		Eventually(func(g Gomega) {
			cms := &corev1.ConfigMapList{}
			g.Expect(k8s.List(ctx, cms, client.InNamespace(namespace), client.HasLabels{v1alpha1.LabelPredefinedAction})).To(Succeed())
			g.Expect(cms.Items).To(BeEmpty())
			templates := &v1alpha1.ActionTemplateList{}
			g.Expect(k8s.List(ctx, templates)).To(Succeed())
			g.Expect(templates.Items).To(BeEmpty())
			webhooks := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
			g.Expect(k8s.List(ctx, webhooks)).To(Succeed())
			g.Expect(webhooks.Items).To(BeEmpty())
			bindings := &rbacv1.ClusterRoleBindingList{}
			g.Expect(k8s.List(ctx, bindings, client.MatchingLabels{v1alpha1.LabelPartOf: v1alpha1.PartOfValue})).To(Succeed())
			g.Expect(bindings.Items).To(BeEmpty())
			roles := &rbacv1.ClusterRoleList{}
			g.Expect(k8s.List(ctx, roles, client.MatchingLabels{v1alpha1.LabelPartOf: v1alpha1.PartOfValue})).To(Succeed())
			g.Expect(roles.Items).To(BeEmpty())
			deployments := &appsv1.DeploymentList{}
			g.Expect(k8s.List(ctx, deployments, client.InNamespace(namespace))).To(Succeed())
			g.Expect(deployments.Items).To(BeEmpty())
		}).Should(Succeed())
		for _, name := range []string{"kubernetesexecutions.kubernetesexecution.kubernaut.io", "actiontemplates.kubernetesexecution.kubernaut.io"} {
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed(), "crds.keep keeps %s", name)
		}
	})
})

// expectServingCertificate checks the webhook Secret the chart generated: tls.key is the key of
// tls.crt, and tls.crt is a serving certificate for the webhook Service signed by ca.crt.
func expectServingCertificate(secret *corev1.Secret) {
	GinkgoHelper()
	Expect(secret.Data).To(HaveLen(3))
	pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
	Expect(err).NotTo(HaveOccurred(), "tls.key is the key of tls.crt")
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(secret.Data["ca.crt"])).To(BeTrue(), "ca.crt holds a certificate")
	_, err = pair.Leaf.Verify(x509.VerifyOptions{
		DNSName: release + "-webhook." + namespace + ".svc", Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	Expect(err).NotTo(HaveOccurred(), "tls.crt serves the webhook Service and is signed by ca.crt")
}
