package controllers_test

import (
	"context"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

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
})
