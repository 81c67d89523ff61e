package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// preregisteredSecret is the Secret the suite's manager is told to register when it appears.
const preregisteredSecret = "cluster-preregistered"

// clusterEvents lists the reasons and notes of the Events about a cluster Secret, oldest first.
func clusterEvents(ctx context.Context, g Gomega, secret string) (reasons, notes []string) {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx, list, client.InNamespace(e2eutil.Namespace))).To(Succeed())
	for _, e := range list.Items {
		if e.Regarding.Kind == "Secret" && e.Regarding.Name == secret {
			reasons, notes = append(reasons, e.Reason), append(notes, e.Note)
		}
	}
	return reasons, notes
}

// clusterReady is the value of a cluster's kubernaut_cluster_ready series, -1 when there is none.
func clusterReady(name string) float64 {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "kubernaut_cluster_ready" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" && l.GetValue() == name {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

var _ = Describe("Target clusters registered as Secrets", Ordered, func() {
	var target *localcluster.Cluster
	var kubeconfig []byte

	BeforeAll(func(ctx SpecContext) {
		var err error
		target, err = e2eutil.StartClusterWith(ctx, "target", localcluster.Options{CRDDirs: []string{}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(target.Stop()).To(Succeed()) })
		kubeconfig, err = os.ReadFile(target.Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
	}, NodeTimeout(2*time.Minute))

	secret := func(name string, data map[string][]byte, annotations map[string]string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: name, Annotations: annotations,
				Labels: map[string]string{v1alpha1.LabelCluster: "true"}},
			Data: data,
		}
	}
	// unreachable is a cluster whose API server does not answer: nothing listens on port 1.
	var unreachable map[string][]byte
	BeforeAll(func() {
		unreachable = map[string][]byte{v1alpha1.ClusterSecretServer: []byte("https://127.0.0.1:1"), v1alpha1.ClusterSecretCA: target.Config.CAData, v1alpha1.ClusterSecretToken: []byte("t")}
	})

	It("connects a cluster when its Secret appears, reconnects when it changes, and disconnects when it goes, without a restart", func(ctx SpecContext) {
		s := secret("cluster-east", map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}, map[string]string{v1alpha1.AnnotationClusterName: "east"})
		Expect(k8s.Create(ctx, s)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
		Eventually(func(g Gomega) {
			reasons, notes := clusterEvents(ctx, g, s.Name)
			g.Expect(reasons).To(Equal([]string{controllers.ReasonClusterReady}))
			g.Expect(notes[0]).To(HavePrefix("Cluster east is connected: Kubernetes v1."))
			g.Expect(notes[0]).To(HaveSuffix(strings.TrimSuffix(target.Config.Host, "/")))
		}).Should(Succeed())
		Expect(clusterReady("east")).To(BeEquivalentTo(1))

		By("rotating the Secret to credentials for an API server that does not answer")
		s.Data = unreachable
		Expect(k8s.Update(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			reasons, notes := clusterEvents(ctx, g, s.Name)
			g.Expect(reasons).To(Equal([]string{controllers.ReasonClusterReady, controllers.ReasonClusterUnreachable}))
			g.Expect(notes[1]).To(ContainSubstring("Cluster east is unreachable: "))
			g.Expect(notes[1]).To(ContainSubstring("127.0.0.1:1"))
		}, time.Minute).Should(Succeed())
		Expect(clusterReady("east")).To(BeEquivalentTo(0))

		By("rotating it back")
		s.Data = map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}
		Expect(k8s.Update(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			reasons, _ := clusterEvents(ctx, g, s.Name)
			g.Expect(reasons).To(HaveLen(3))
			g.Expect(reasons[2]).To(Equal(controllers.ReasonClusterReady))
		}, time.Minute).Should(Succeed())
		Eventually(clusterReady).WithArguments("east").Should(BeEquivalentTo(1))

		By("deleting the Secret")
		Expect(k8s.Delete(ctx, s)).To(Succeed())
		Eventually(clusterReady).WithArguments("east").Should(BeEquivalentTo(-1))
	})

	It("disconnects a cluster whose Secret loses its label", func(ctx SpecContext) {
		s := secret("west", map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}, nil)
		Expect(k8s.Create(ctx, s)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
		Eventually(clusterReady).WithArguments("west").Should(BeEquivalentTo(1))
		delete(s.Labels, v1alpha1.LabelCluster)
		Expect(k8s.Update(ctx, s)).To(Succeed())
		Eventually(clusterReady).WithArguments("west").Should(BeEquivalentTo(-1))
	})

	It("registers a Secret named in its options once it appears, with the patch rights on it alone", func(ctx SpecContext) {
		// As the chart grants it for clusters.secrets: get and patch on that Secret by name.
		Expect(k8s.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: "register-" + preregisteredSecret},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{preregisteredSecret}, Verbs: []string{"get", "patch"}}},
		})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: "register-" + preregisteredSecret},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "register-" + preregisteredSecret},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kubernaut-system", Name: "kubernaut-executor"}},
		})).To(Succeed())
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: preregisteredSecret},
			Data: map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}}
		Expect(k8s.Create(ctx, s)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
			g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelCluster, "true"))
			g.Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationClusterName, "pre"))
		}, time.Minute).Should(Succeed())
		Eventually(clusterReady).WithArguments("pre").Should(BeEquivalentTo(1))
	})

	It("refuses a Secret it cannot use, saying why, and a second Secret for a registered name", func(ctx SpecContext) {
		bad := map[string]*corev1.Secret{
			"unable to load root certificates":                     secret("cluster-badca", map[string][]byte{v1alpha1.ClusterSecretServer: []byte("https://127.0.0.1:1"), v1alpha1.ClusterSecretCA: []byte("not a certificate"), v1alpha1.ClusterSecretToken: []byte("t")}, nil),
			"neither data.kubeconfig nor [data.ca.crt data.token]": secret("cluster-incomplete", map[string][]byte{v1alpha1.ClusterSecretServer: []byte("https://127.0.0.1:1")}, nil),
			`the cluster name "Not_A_Label" is not a DNS label`:    secret("cluster-badname", unreachable, map[string]string{v1alpha1.AnnotationClusterName: "Not_A_Label"}),
			"data.kubeconfig: refers to files":                     secret("cluster-files", map[string][]byte{v1alpha1.ClusterSecretKubeconfig: []byte(strings.Join([]string{"apiVersion: v1", "kind: Config", "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', certificate-authority: /etc/ca.crt}}]", "users: [{name: u, user: {token: t}}]", "contexts: [{name: x, context: {cluster: c, user: u}}]", "current-context: x"}, "\n"))}, nil),
		}
		first := secret("cluster-first", unreachable, map[string]string{v1alpha1.AnnotationClusterName: "shared"})
		Expect(k8s.Create(ctx, first)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, first))).To(Succeed()) })
		Eventually(clusterReady).WithArguments("shared").Should(BeEquivalentTo(0))
		bad[`the cluster name "shared" is already registered by Secret cluster-first`] = secret("cluster-second", unreachable, map[string]string{v1alpha1.AnnotationClusterName: "shared"})
		for why, s := range bad {
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(func(g Gomega) {
				reasons, notes := clusterEvents(ctx, g, s.Name)
				g.Expect(reasons).To(Equal([]string{controllers.ReasonClusterInvalid}))
				g.Expect(notes[0]).To(ContainSubstring(why))
			}).Should(Succeed(), why)
		}
	})

	Context("executing there", func() {
		var targetK8s client.Client
		var ns string
		// hubCredentials are the executor's credentials on the target, as config/target makes
		// them, for a Secret whose server is server.
		var hubCredentials func(server string) map[string][]byte
		BeforeAll(func(ctx SpecContext) {
			var err error
			targetK8s, err = client.New(target.Config, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			Expect(err).NotTo(HaveOccurred())
			ensureTemplate(ctx, testTemplate, "kubernaut-actions")
			// The executor's identity there, as docs/multicluster.md installs it: the ceiling
			// and config/target, nothing more.
			config := filepath.Join(e2eutil.RepoRoot(), "config")
			out, err := e2eutil.Kubectl(target.Kubeconfig, "", "apply", "-f", filepath.Join(config, "rbac", "namespace.yaml"),
				"-f", filepath.Join(config, "rbac", "ceiling.yaml"), "-f", filepath.Join(config, "rbac", "ceiling-predefined.yaml"),
				"-f", filepath.Join(config, "target", "target.yaml"))
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(targetK8s.Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-test-actions", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
				Rules:      ceilingFragment,
			})).To(Succeed())
			token := &corev1.Secret{}
			Eventually(func(g Gomega) {
				g.Expect(targetK8s.Get(ctx, client.ObjectKey{Namespace: "kubernaut-system", Name: "kubernaut-executor-hub-token"}, token)).To(Succeed())
				g.Expect(token.Data).To(HaveKey("token"))
			}).Should(Succeed())
			hubCredentials = func(server string) map[string][]byte {
				return map[string][]byte{v1alpha1.ClusterSecretServer: []byte(server), v1alpha1.ClusterSecretCA: token.Data["ca.crt"], v1alpha1.ClusterSecretToken: token.Data["token"]}
			}
			s := secret("cluster-target", hubCredentials(target.Config.Host), map[string]string{v1alpha1.AnnotationClusterName: "target"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(clusterReady).WithArguments("target").Should(BeEquivalentTo(1))
		})
		BeforeEach(func(ctx SpecContext) {
			// The execution's namespace here; the same name, with the target, there.
			ns = newNamespace(ctx)
			Expect(targetK8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
				Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}})).To(Succeed())
			Expect(targetK8s.Create(ctx, deployment(ns, "web"))).To(Succeed())
		})
		remote := func(name, params, cluster string) *v1alpha1.KubernetesExecution {
			obj := newExecution(ns, name, params)
			obj.Spec.Action.Target.Cluster = cluster
			return obj
		}
		// there counts the execution's objects in the target cluster: Jobs, ServiceAccounts and
		// grant Roles.
		there := func(ctx context.Context, c client.Client, obj *v1alpha1.KubernetesExecution) func(Gomega) []int {
			return func(g Gomega) []int {
				jobs, sas, roles := &batchv1.JobList{}, &corev1.ServiceAccountList{}, &rbacv1.RoleList{}
				g.Expect(c.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
				g.Expect(c.List(ctx, sas, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelExecutionUID: string(obj.UID)})).To(Succeed())
				g.Expect(c.List(ctx, roles, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelExecutionUID: string(obj.UID)})).To(Succeed())
				return []int{len(jobs.Items), len(sas.Items), len(roles.Items)}
			}
		}

		It("runs an execution there: its ServiceAccount, grant and Job there, the grant only while it runs; its status here", func(ctx SpecContext) {
			obj := remote("remote-run", `{"sleepSeconds":3,"output":"ran there"}`, "target")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 1, 1}), "the Job, ServiceAccount and Role in the target cluster")
			Expect(there(ctx, k8s, obj)(Default)).To(Equal([]int{0, 0, 0}), "nothing of it in the executor's cluster")
			job := &batchv1.Job{}
			Expect(targetK8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "remote-run-1"}, job)).To(Succeed())
			Expect(job.OwnerReferences).To(BeEmpty())
			Expect(job.Labels).To(HaveKeyWithValue(v1alpha1.LabelExecutionUID, string(obj.UID)))

			Eventually(phaseOf(ctx, obj), time.Minute).Should(Equal(v1alpha1.PhaseCompleted))
			got := get(ctx, obj)(Default)
			Expect(got.Status.Result.Output).To(Equal("ran there"))
			Expect(got.Status.Attempts).To(HaveLen(1))
			Eventually(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 0, 0}), "the grant revoked there; the Job kept for its TTL")
			Eventually(func(g Gomega) {
				g.Expect(targetK8s.Get(ctx, client.ObjectKeyFromObject(job), job)).To(Succeed())
				g.Expect(job.Spec.TTLSecondsAfterFinished).NotTo(BeNil())
			}).Should(Succeed())
		})

		It("fails an execution whose cluster is not registered, creating nothing", func(ctx SpecContext) {
			obj := remote("nowhere", `{}`, "nowhere")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got := get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonClusterNotFound))
			Expect(readyCondition(got).Message).To(ContainSubstring(`the target cluster "nowhere" is not registered`))
			Expect(there(ctx, k8s, obj)(Default)).To(Equal([]int{0, 0, 0}))
			Expect(there(ctx, targetK8s, obj)(Default)).To(Equal([]int{0, 0, 0}))
		})

		It("holds an execution while its cluster does not answer, and runs it once it does", func(ctx SpecContext) {
			s := secret("cluster-late", unreachable, map[string]string{v1alpha1.AnnotationClusterName: "late"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(clusterReady).WithArguments("late").Should(BeEquivalentTo(0))
			obj := remote("late-run", `{}`, "late")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(func(g Gomega) {
				got := get(ctx, obj)(g)
				g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhasePending))
				g.Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonClusterUnreachable))
				g.Expect(readyCondition(got).Message).To(ContainSubstring(`the target cluster "late" is unreachable`))
			}).Should(Succeed())
			Consistently(there(ctx, targetK8s, obj)).Should(Equal([]int{0, 0, 0}))

			By("rotating the Secret to credentials that work")
			s.Data = map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}
			Expect(k8s.Update(ctx, s)).To(Succeed())
			Eventually(phaseOf(ctx, obj), time.Minute).Should(Equal(v1alpha1.PhaseCompleted))
		})

		It("refuses a requester who may not execute on the cluster, or may not act there, creating nothing there", func(ctx SpecContext) {
			deploymentRights := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}
			// Every right here, none to execute on the cluster.
			noExecute := newTenant(ctx, "no-execute-"+ns, []rbacv1.PolicyRule{executionRights, deploymentRights}, ns)
			obj := remote("no-execute", `{}`, "target")
			Expect(noExecute.c.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got := get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonRequesterForbidden))
			Expect(readyCondition(got).Message).To(ContainSubstring(fmt.Sprintf(`the requester %s may no longer execute on cluster "target"`, noExecute.name)))
			Expect(there(ctx, targetK8s, obj)(Default)).To(Equal([]int{0, 0, 0}))

			// May execute on the cluster, but holds nothing there.
			executeRight := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"clusters"}, ResourceNames: []string{"target"}, Verbs: []string{"execute"}}
			stranger := newTenant(ctx, "stranger-"+ns, []rbacv1.PolicyRule{executionRights, deploymentRights}, ns)
			Expect(e2eutil.GrantUser(ctx, k8s, stranger.name, "", executeRight)).To(Succeed())
			obj = remote("stranger", `{}`, "target")
			Expect(stranger.c.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got = get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonRequesterForbidden))
			Expect(readyCondition(got).Message).To(ContainSubstring(fmt.Sprintf(`the requester %s may no longer get deployments.apps "web" in namespace %s`, stranger.name, ns)))
			Expect(there(ctx, targetK8s, obj)(Default)).To(Equal([]int{0, 0, 0}))
		})

		It("checks a requester there as the identity the cluster's Secret maps them to, and refuses one the map does not name", func(ctx SpecContext) {
			// The hub knows carol and dave; the target knows carol as carol-east and has a dave of
			// its own, with the same rights, whom the map does not name.
			carol, dave := "carol-"+ns, "dave-"+ns
			data := hubCredentials(target.Config.Host)
			data[v1alpha1.ClusterSecretIdentities] = []byte(fmt.Sprintf("users:\n  %s: carol-east\n", carol))
			s := secret("cluster-mapped", data, map[string]string{v1alpha1.AnnotationClusterName: "mapped"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(clusterReady).WithArguments("mapped").Should(BeEquivalentTo(1))

			deploymentRights := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}
			executeRight := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"clusters"}, ResourceNames: []string{"mapped"}, Verbs: []string{"execute"}}
			for _, u := range []string{"carol-east", dave} {
				Expect(e2eutil.GrantUser(ctx, targetK8s, u, ns, deploymentRights)).To(Succeed())
			}
			// nothingThere checks that obj has no Job, ServiceAccount or grant there (carol's first
			// Job is kept for its TTL in the same namespace).
			nothingThere := func(ctx context.Context, obj *v1alpha1.KubernetesExecution) {
				GinkgoHelper()
				Expect(there(ctx, targetK8s, obj)(Default)[1:]).To(Equal([]int{0, 0}), "no ServiceAccount or grant there")
				err := targetK8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.Name + "-1"}, &batchv1.Job{})
				Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no Job there: %v", err)
			}
			var tenants []*tenant
			for _, u := range []string{carol, dave} {
				t := newTenant(ctx, u, []rbacv1.PolicyRule{executionRights}, ns)
				Expect(e2eutil.GrantUser(ctx, k8s, u, "", executeRight)).To(Succeed())
				tenants = append(tenants, t)
			}

			By("carol, mapped to carol-east, who may act there")
			obj := remote("as-carol-east", `{}`, "mapped")
			Expect(tenants[0].c.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj), time.Minute).Should(Equal(v1alpha1.PhaseCompleted))

			By("dave, whom the map does not name, though a dave there may act")
			obj = remote("as-dave", `{}`, "mapped")
			Expect(tenants[1].c.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got := get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonRequesterForbidden))
			Expect(readyCondition(got).Message).To(ContainSubstring(fmt.Sprintf(
				`the requester %s has no identity on cluster "mapped": the identity map of its Secret names neither %s nor any of their groups`, dave, dave)))
			nothingThere(ctx, obj)

			By("carol again, once carol-east has lost the right there")
			Expect(targetK8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grant-carol-east"}})).To(Succeed())
			obj = remote("as-carol-east-again", `{}`, "mapped")
			Expect(tenants[0].c.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got = get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonRequesterForbidden))
			Expect(readyCondition(got).Message).To(ContainSubstring(fmt.Sprintf(`the requester %s (as carol-east on cluster "mapped") may no longer get deployments.apps "web"`, carol)))
			nothingThere(ctx, obj)
		})

		It("refuses a cluster Secret whose identity map is invalid, saying why", func(ctx SpecContext) {
			data := hubCredentials(target.Config.Host)
			data[v1alpha1.ClusterSecretIdentities] = []byte("groups:\n  sre: system:masters\n")
			s := secret("cluster-bad-map", data, nil)
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(func(g Gomega) {
				reasons, notes := clusterEvents(ctx, g, s.Name)
				g.Expect(reasons).To(ContainElement(controllers.ReasonClusterInvalid))
				g.Expect(notes).To(ContainElement(ContainSubstring("data.identities: groups[sre]: Forbidden: requesters must not be mapped to system:masters")))
			}).Should(Succeed())
			Expect(clusterReady("cluster-bad-map")).To(BeEquivalentTo(-1))
		})

		It("observes a Job that ran while its cluster was cut off, once it answers again, and never starts it twice", func(ctx SpecContext) {
			// The network between the executor and the cluster: cut, then restored on the same address.
			apiAddr := strings.TrimSuffix(strings.TrimPrefix(target.Config.Host, "https://"), "/")
			fw, err := e2eutil.StartForwarder("127.0.0.1:0", []string{apiAddr})
			Expect(err).NotTo(HaveOccurred())
			addr := fw.Addr()
			DeferCleanup(func() { fw.Close() })
			s := secret("cluster-flaky", hubCredentials("https://"+addr), map[string]string{v1alpha1.AnnotationClusterName: "flaky"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(clusterReady).WithArguments("flaky").Should(BeEquivalentTo(1))

			obj := remote("cut-off", `{"sleepSeconds":5,"output":"finished alone"}`, "flaky")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 1, 1}))
			fw.Close()
			Eventually(func(g Gomega) {
				got := get(ctx, obj)(g)
				g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseRunning))
				g.Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonClusterUnreachable))
			}, time.Minute).Should(Succeed())
			// The Job finishes there meanwhile.
			Eventually(func(g Gomega) {
				job := &batchv1.Job{}
				g.Expect(targetK8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cut-off-1"}, job)).To(Succeed())
				g.Expect(jobCondition(job, batchv1.JobComplete)).NotTo(BeNil())
			}, time.Minute).Should(Succeed())
			Expect(get(ctx, obj)(Default).Status.Phase).To(Equal(v1alpha1.PhaseRunning), "nothing is decided while the cluster does not answer")

			fw, err = e2eutil.StartForwarder(addr, []string{apiAddr})
			Expect(err).NotTo(HaveOccurred())
			Eventually(phaseOf(ctx, obj), time.Minute).Should(Equal(v1alpha1.PhaseCompleted))
			got := get(ctx, obj)(Default)
			Expect(got.Status.Result.Output).To(Equal("finished alone"))
			Expect(got.Status.Attempts).To(HaveLen(1))
			Eventually(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 0, 0}), "one Job ever; the grant revoked")
		})

		It("fails the executions of a cluster whose Secret is deleted, and stops their Jobs and revokes their grants there once it is registered again", func(ctx SpecContext) {
			s := secret("cluster-removed", hubCredentials(target.Config.Host), map[string]string{v1alpha1.AnnotationClusterName: "removed"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
			Eventually(clusterReady).WithArguments("removed").Should(BeEquivalentTo(1))
			obj := remote("orphaned", `{"sleepSeconds":600}`, "removed")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 1, 1}))

			Expect(k8s.Delete(ctx, s)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			got := get(ctx, obj)(Default)
			Expect(readyCondition(got).Reason).To(Equal(v1alpha1.ReasonClusterNotFound))
			Expect(readyCondition(got).Message).To(ContainSubstring(`the target cluster "removed" is not registered`))
			Consistently(there(ctx, targetK8s, obj)).Should(Equal([]int{1, 1, 1}), "nothing can be revoked in a cluster that is not registered")

			s = secret("cluster-removed", hubCredentials(target.Config.Host), map[string]string{v1alpha1.AnnotationClusterName: "removed"})
			Expect(k8s.Create(ctx, s)).To(Succeed())
			Eventually(there(ctx, targetK8s, obj), time.Minute).Should(Equal([]int{0, 0, 0}), "the Job stopped and deleted, the grant revoked")
			Eventually(func() []string { return get(ctx, obj)(Default).Finalizers }).ShouldNot(ContainElement(v1alpha1.GrantFinalizer))
		})

		It("sweeps a connected cluster, not only as it connects, of the grants and Jobs of executions that no longer exist", func(ctx SpecContext) {
			// An execution that exists (it failed: its cluster is not registered) and one that
			// does not; the target cluster connected long before either left anything there.
			kept := remote("kept", `{}`, "nowhere")
			Expect(k8s.Create(ctx, kept)).To(Succeed())
			Eventually(phaseOf(ctx, kept)).Should(Equal(v1alpha1.PhaseFailed))
			labelsFor := func(uid string) map[string]string {
				return map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
					v1alpha1.LabelExecutionUID: uid, v1alpha1.LabelExecutionNamespace: ns}
			}
			rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}
			keptRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept-grant", Labels: labelsFor(string(kept.UID))}, Rules: rules}
			goneRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone-grant", Labels: labelsFor("0f0e7bd3-gone")}, Rules: rules}
			goneJob := &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone-1", Labels: labelsFor("0f0e7bd3-gone")},
				Spec: batchv1.JobSpec{Suspend: ptr.To(true), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "action", Image: "kubernaut-actions"}},
				}}},
			}
			for _, o := range []client.Object{keptRole, goneRole, goneJob} {
				Expect(targetK8s.Create(ctx, o)).To(Succeed())
			}
			Eventually(func(g Gomega) {
				g.Expect(apierrors.IsNotFound(targetK8s.Get(ctx, client.ObjectKeyFromObject(goneRole), &rbacv1.Role{}))).To(BeTrue(), "the orphaned grant is swept")
				g.Expect(apierrors.IsNotFound(targetK8s.Get(ctx, client.ObjectKeyFromObject(goneJob), &batchv1.Job{}))).To(BeTrue(), "the orphaned Job is swept")
			}, time.Minute).Should(Succeed())
			Consistently(func() error {
				return targetK8s.Get(ctx, client.ObjectKeyFromObject(keptRole), &rbacv1.Role{})
			}, 5*time.Second).Should(Succeed(), "a grant of an execution that exists is kept")
		})

		It("acts on a Node of the target cluster with a cluster-wide grant there, narrowed to that Node", func(ctx SpecContext) {
			tpl := createTemplate(ctx, &v1alpha1.ActionTemplate{
				ObjectMeta: metav1.ObjectMeta{Name: "remote-node-action"},
				Spec: v1alpha1.ActionTemplateSpec{
					Image: "kubernaut-actions", Args: []string{"test-action"}, TargetKinds: []string{"Node"},
					RetryPolicy: v1alpha1.RetryPolicy{NonRetryableExitCodes: []int32{2}},
					RBAC: v1alpha1.ActionRBAC{Scope: v1alpha1.RBACScopeCluster, Rules: []rbacv1.PolicyRule{
						{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
					}},
				},
			})
			obj := remote("node-there", `{"apiCalls":[{"verb":"patch","resource":"nodes","name":"local-node"},{"verb":"patch","resource":"nodes","name":"`+localcluster.SpareNodeName+`"}]}`, "target")
			obj.Spec.Action.Type = tpl.Name
			obj.Spec.Action.Target = v1alpha1.TargetSpec{Cluster: "target", ResourceKind: "Node", ResourceName: "local-node"}
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj), time.Minute).Should(Equal(v1alpha1.PhaseFailed), "the second call is refused")
			var data struct {
				Calls []struct {
					Call   string `json:"call"`
					Status int32  `json:"status"`
				} `json:"calls"`
			}
			got := get(ctx, obj)(Default)
			Expect(json.Unmarshal(got.Status.Result.Data.Raw, &data)).To(Succeed())
			Expect(data.Calls).To(HaveLen(2))
			Expect(data.Calls[0].Status).To(BeEquivalentTo(200), "the target cluster's own Node: %s", data.Calls[0].Call)
			Expect(data.Calls[1].Status).To(BeEquivalentTo(403), "another Node there: %s", data.Calls[1].Call)
			Eventually(func(g Gomega) int {
				roles, bindings := &rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}
				sel := client.MatchingLabels{v1alpha1.LabelExecutionUID: string(obj.UID)}
				g.Expect(targetK8s.List(ctx, roles, sel)).To(Succeed())
				g.Expect(targetK8s.List(ctx, bindings, sel)).To(Succeed())
				return len(roles.Items) + len(bindings.Items)
			}).Should(BeZero(), "the cluster-wide grant revoked there")
		})

		It("ignores a cluster Secret outside the executor's namespace, and a kubeconfig that would send the executor's own token", func(ctx SpecContext) {
			// A tenant who may create Secrets in their own namespace cannot register a cluster.
			elsewhere := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cluster-rogue",
				Labels: map[string]string{v1alpha1.LabelCluster: "true"}, Annotations: map[string]string{v1alpha1.AnnotationClusterName: "rogue"}},
				Data: map[string][]byte{v1alpha1.ClusterSecretKubeconfig: kubeconfig}}
			Expect(k8s.Create(ctx, elsewhere)).To(Succeed())
			// A kubeconfig whose token is the manager's own file, for a server its author runs.
			stealer := secret("cluster-stealer", map[string][]byte{v1alpha1.ClusterSecretKubeconfig: []byte(strings.Join([]string{
				"apiVersion: v1", "kind: Config", "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]",
				"users: [{name: u, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}]",
				"contexts: [{name: x, context: {cluster: c, user: u}}]", "current-context: x"}, "\n"))}, map[string]string{v1alpha1.AnnotationClusterName: "stealer"})
			Expect(k8s.Create(ctx, stealer)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, stealer))).To(Succeed()) })
			Eventually(func(g Gomega) {
				reasons, notes := clusterEvents(ctx, g, stealer.Name)
				g.Expect(reasons).To(Equal([]string{controllers.ReasonClusterInvalid}))
				g.Expect(notes[0]).To(ContainSubstring("refers to files (client-certificate, client-key or tokenFile)"))
			}).Should(Succeed())
			Expect(clusterReady("stealer")).To(BeEquivalentTo(-1))
			Consistently(clusterReady).WithArguments("rogue").Should(BeEquivalentTo(-1))
			obj := remote("rogue-run", `{}`, "rogue")
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseFailed))
			Expect(readyCondition(get(ctx, obj)(Default)).Reason).To(Equal(v1alpha1.ReasonClusterNotFound))
		})
	})
})
