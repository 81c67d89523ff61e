package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

const testImage = localcluster.ActionsImage + ":test"

// restricted is a pod spec that passes the restricted Pod Security Standard and runs the test
// action with parameters.
func restricted(params string) corev1.PodSpec {
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name: "app", Image: testImage, Args: []string{"test-action"},
			Env: []corev1.EnvVar{{Name: v1alpha1.EnvActionParameters, Value: params}},
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		}},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

func newDeployment(ns, name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	spec := restricted(`{"sleepSeconds":600}`)
	spec.Containers[0].Image = image
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
}

func newPod(ns, name, params string, labels map[string]string) *corev1.Pod {
	spec := restricted(params)
	spec.RestartPolicy = corev1.RestartPolicyNever
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: spec}
}

func waitPodReady(ctx context.Context, ns, name string) *corev1.Pod {
	pod := &corev1.Pod{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)).To(Succeed())
		g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
	}).Should(Succeed())
	return pod
}

// run applies an execution with kubectl, as its requester would, and waits for a final phase.
func run(ctx context.Context, ns, name, action, kind, targetNS, target, params string, extra ...string) *v1alpha1.KubernetesExecution {
	manifest := e2eutil.ExecutionManifest(ns, name, action, params, targetNS, kind, target, extra...)
	out, err := e2eutil.Kubectl(cluster.Kubeconfig, manifest, "apply", "-f", "-")
	Expect(err).NotTo(HaveOccurred(), out)
	obj := &v1alpha1.KubernetesExecution{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
		g.Expect(obj.Status.Phase.IsTerminal()).To(BeTrue(), "phase %s", obj.Status.Phase)
	}, 90*time.Second).Should(Succeed())
	return obj
}

// change is the before/after record of the result's data.
type change struct {
	Before  map[string]any `json:"before"`
	After   map[string]any `json:"after"`
	DryRun  bool           `json:"dryRun"`
	Changed bool           `json:"changed"`
}

func dataOf(obj *v1alpha1.KubernetesExecution) change {
	var c change
	Expect(obj.Status.Result).NotTo(BeNil())
	Expect(obj.Status.Result.Data).NotTo(BeNil(), "result %+v", obj.Status.Result)
	Expect(json.Unmarshal(obj.Status.Result.Data.Raw, &c)).To(Succeed())
	return c
}

func completed(obj *v1alpha1.KubernetesExecution) {
	Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseCompleted), "result %+v, attempts %+v", obj.Status.Result, obj.Status.Attempts)
	Expect(obj.Status.Result.Success).To(BeTrue())
}

var _ = Describe("The predefined actions", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = cluster.Namespace(ctx, "actions", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
	})

	It("scale-deployment changes the replicas, and a dry run changes nothing", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, newDeployment(ns, "web", "registry.invalid/web:1", 1))).To(Succeed())
		dry := run(ctx, ns, "scale-dry", "scale-deployment", "Deployment", ns, "web", `{replicas: 3}`, "  dryRun: true")
		completed(dry)
		c := dataOf(dry)
		Expect(c.DryRun).To(BeTrue())
		Expect(c.Before).To(HaveKeyWithValue("replicas", BeEquivalentTo(1)))
		Expect(c.After).To(HaveKeyWithValue("replicas", BeEquivalentTo(3)))
		Expect(dry.Status.Result.Output).To(ContainSubstring("would scale"))
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d)).To(Succeed())
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(1), "a dry run changes nothing")

		obj := run(ctx, ns, "scale", "scale-deployment", "Deployment", ns, "web", `{replicas: 3}`)
		completed(obj)
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d)).To(Succeed())
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
		c = dataOf(obj)
		Expect(c.Before).To(HaveKeyWithValue("replicas", BeEquivalentTo(1)))
		Expect(c.After).To(HaveKeyWithValue("replicas", BeEquivalentTo(3)))
		Expect(c.Changed).To(BeTrue())

		again := run(ctx, ns, "scale-again", "scale-deployment", "Deployment", ns, "web", `{replicas: 3}`)
		completed(again)
		Expect(dataOf(again).Changed).To(BeFalse(), "idempotent: nothing written")
	})

	It("restart-pod evicts the pod, and a PodDisruptionBudget's refusal fails with its reason", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, newPod(ns, "victim", `{"sleepSeconds":600}`, nil))).To(Succeed())
		before := waitPodReady(ctx, ns, "victim")
		obj := run(ctx, ns, "restart", "restart-pod", "Pod", ns, "victim", `{}`)
		completed(obj)
		Expect(dataOf(obj).Before).To(HaveKeyWithValue("uid", string(before.UID)))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "victim"}, &corev1.Pod{}))
		}).Should(BeTrue())

		protected := map[string]string{"app": "protected"}
		Expect(k8s.Create(ctx, newPod(ns, "guarded", `{"sleepSeconds":600}`, protected))).To(Succeed())
		waitPodReady(ctx, ns, "guarded")
		Expect(k8s.Create(ctx, &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guard"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: protected}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			pdb := &policyv1.PodDisruptionBudget{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "guard"}, pdb)).To(Succeed())
			g.Expect(pdb.Status.CurrentHealthy).To(BeEquivalentTo(1))
			g.Expect(pdb.Status.DisruptionsAllowed).To(BeEquivalentTo(0))
		}).Should(Succeed())
		refused := run(ctx, ns, "restart-guarded", "restart-pod", "Pod", ns, "guarded", `{}`, "  maxRetries: 1")
		Expect(refused.Status.Phase).To(Equal(v1alpha1.PhaseFailed))
		Expect(refused.Status.Attempts).To(HaveLen(2), "a budget's refusal is retried")
		Expect(refused.Status.Result.Error).To(ContainSubstring("PodDisruptionBudget"))
		Expect(refused.Status.Result.Error).To(ContainSubstring("disruption budget"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "guarded"}, &corev1.Pod{})).To(Succeed(), "the guarded pod stays")
	})

	It("rollback-deployment puts the template back at the previous revision", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, newDeployment(ns, "api", "registry.invalid/api:v1", 0))).To(Succeed())
		waitRevision(ctx, ns, "api", "1")
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "api"}, d)).To(Succeed())
		d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/api:v2"
		Expect(k8s.Update(ctx, d)).To(Succeed())
		waitRevision(ctx, ns, "api", "2")

		dry := run(ctx, ns, "rollback-dry", "rollback-deployment", "Deployment", ns, "api", `{}`, "  dryRun: true")
		completed(dry)
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "api"}, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("registry.invalid/api:v2"), "a dry run changes nothing")

		obj := run(ctx, ns, "rollback", "rollback-deployment", "Deployment", ns, "api", `{}`)
		completed(obj)
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "api"}, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("registry.invalid/api:v1"))
		c := dataOf(obj)
		Expect(c.Before).To(HaveKeyWithValue("images", ConsistOf("registry.invalid/api:v2")))
		Expect(c.After).To(HaveKeyWithValue("images", ConsistOf("registry.invalid/api:v1")))
	})

	It("cordon-node marks only its node unschedulable, and uncordon reverses it", func(ctx SpecContext) {
		node := localcluster.SpareNodeName
		dry := run(ctx, ns, "cordon-dry", "cordon-node", "Node", "", node, `{}`, "  dryRun: true")
		completed(dry)
		Expect(dataOf(dry).After).To(HaveKeyWithValue("unschedulable", true))
		Expect(unschedulable(ctx, node)).To(BeFalse(), "a dry run changes nothing")

		obj := run(ctx, ns, "cordon", "cordon-node", "Node", "", node, `{}`)
		completed(obj)
		Expect(unschedulable(ctx, node)).To(BeTrue())
		Expect(unschedulable(ctx, localcluster.NodeName)).To(BeFalse())
		c := dataOf(obj)
		Expect(c.Before).To(HaveKeyWithValue("unschedulable", false))
		Expect(c.After).To(HaveKeyWithValue("unschedulable", true))

		undo := run(ctx, ns, "uncordon", "cordon-node", "Node", "", node, `{uncordon: true}`)
		completed(undo)
		Expect(unschedulable(ctx, node)).To(BeFalse())
	})

	It("collect-logs returns the logs of a pod the node agent ran", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, newPod(ns, "chatty", `{"output":"hello from the chatty pod"}`, nil))).To(Succeed())
		Eventually(func(g Gomega) {
			pod := &corev1.Pod{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chatty"}, pod)).To(Succeed())
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodSucceeded))
		}).Should(Succeed())
		obj := run(ctx, ns, "logs", "collect-logs", "Pod", ns, "chatty", `{tailLines: 5}`)
		completed(obj)
		Expect(obj.Status.Result.Output).To(ContainSubstring("hello from the chatty pod"))
	})

	It("drain-node evicts every evictable pod of its node and leaves DaemonSet pods", func(ctx SpecContext) {
		node := localcluster.SpareNodeName
		DeferCleanup(func(ctx SpecContext) {
			patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"unschedulable":false}}`))
			Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, patch)).To(Succeed())
		})
		for _, name := range []string{"worker-a", "worker-b"} {
			pod := newPod(ns, name, `{"sleepSeconds":600}`, nil)
			pod.Spec.NodeName = node
			Expect(k8s.Create(ctx, pod)).To(Succeed())
			waitPodReady(ctx, ns, name)
		}
		labels := map[string]string{"app": "agent"}
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: restricted(`{"sleepSeconds":600}`)}}}
		Expect(k8s.Create(ctx, ds)).To(Succeed())
		var dsPod string
		Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
			for _, p := range pods.Items {
				if p.Spec.NodeName == node && p.Status.Phase == corev1.PodRunning {
					dsPod = p.Name
				}
			}
			g.Expect(dsPod).NotTo(BeEmpty())
		}).Should(Succeed())

		obj := run(ctx, ns, "drain", "drain-node", "Node", "", node, `{timeoutSeconds: 30}`)
		completed(obj)
		Expect(unschedulable(ctx, node)).To(BeTrue())
		for _, name := range []string{"worker-a", "worker-b"} {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{}))
			}).Should(BeTrue(), name)
		}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: dsPod}, &corev1.Pod{})).To(Succeed(), "the DaemonSet pod stays")
		var data map[string]any
		Expect(json.Unmarshal(obj.Status.Result.Data.Raw, &data)).To(Succeed())
		Expect(data["evicted"]).To(ConsistOf(ns+"/worker-a", ns+"/worker-b"))
		Expect(data["skipped"]).To(ContainElement(ns + "/" + dsPod + " (DaemonSet)"))
	})

	It("drain-node runs one at a time cluster-wide: three requests on three Nodes wait their turn, in creation order", func(ctx SpecContext) {
		// Nodes with no kubelet and no pods: each drain cordons its Node and finds nothing to
		// evict, so it is quick, and the chart's concurrency cap of 1 is what orders them.
		var names []string
		for i := range 3 {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("capped-node-%d", i)}}
			Expect(k8s.Create(ctx, node)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, node))).To(Succeed()) })
			names = append(names, node.Name)
		}
		// All three at once, in one apply: their creation times tie (whole seconds), and the
		// names, drain-0 to drain-2, give the order.
		var manifests []string
		for i, node := range names {
			manifests = append(manifests, e2eutil.ExecutionManifest(ns, fmt.Sprintf("drain-%d", i), "drain-node", `{timeoutSeconds: 30}`, "", "Node", node))
		}
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, strings.Join(manifests, "\n---\n"), "apply", "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		execs := func(g Gomega) []v1alpha1.KubernetesExecution {
			out := make([]v1alpha1.KubernetesExecution, len(names))
			for i := range names {
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("drain-%d", i)}, &out[i])).To(Succeed())
			}
			return out
		}
		sawQueueFull := false
		Eventually(func(g Gomega) {
			running, done := 0, 0
			for _, e := range execs(g) {
				switch {
				case e.Status.Phase == v1alpha1.PhaseRunning || e.Status.Phase == v1alpha1.PhaseRetrying:
					running++
				case e.Status.Phase.IsTerminal():
					done++
				}
				for _, c := range e.Status.Conditions {
					if c.Type == v1alpha1.ConditionReady && c.Reason == v1alpha1.ReasonQueueFull {
						sawQueueFull = true
					}
				}
			}
			Expect(running).To(BeNumerically("<=", 1), "drains running at once") // not g: a breach fails at once
			g.Expect(done).To(Equal(len(names)))
		}, 2*time.Minute, 100*time.Millisecond).Should(Succeed())
		Expect(sawQueueFull).To(BeTrue(), "a later drain waited as QueueFull")
		ended := execs(Default)
		for i := range ended {
			completed(&ended[i])
			Expect(unschedulable(ctx, names[i])).To(BeTrue(), names[i])
			if i > 0 {
				Expect(ended[i].Status.StartTime.Time).NotTo(BeTemporally("<", ended[i-1].Status.CompletionTime.Time),
					"%s started before %s ended", ended[i].Name, ended[i-1].Name)
			}
		}
	})

	It("restart-deployment rolls the pods through the template annotation", func(ctx SpecContext) {
		Expect(k8s.Create(ctx, newDeployment(ns, "front", "registry.invalid/front:1", 0))).To(Succeed())
		waitRevision(ctx, ns, "front", "1")
		dry := run(ctx, ns, "restart-dry", "restart-deployment", "Deployment", ns, "front", `{}`, "  dryRun: true")
		completed(dry)
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "front"}, d)).To(Succeed())
		Expect(d.Spec.Template.Annotations).NotTo(HaveKey("kubectl.kubernetes.io/restartedAt"), "a dry run changes nothing")

		obj := run(ctx, ns, "restart", "restart-deployment", "Deployment", ns, "front", `{}`)
		completed(obj)
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "front"}, d)).To(Succeed())
		Expect(d.Spec.Template.Annotations).To(HaveKey("kubectl.kubernetes.io/restartedAt"))
		waitRevision(ctx, ns, "front", "2")
	})
})

func unschedulable(ctx context.Context, name string) bool {
	n := &corev1.Node{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, n)).To(Succeed())
	return n.Spec.Unschedulable
}

// waitRevision waits until the Deployment controller has recorded revision on the Deployment.
func waitRevision(ctx context.Context, ns, name, revision string) {
	Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
		g.Expect(d.Annotations).To(HaveKeyWithValue("deployment.kubernetes.io/revision", revision))
	}).Should(Succeed())
}
