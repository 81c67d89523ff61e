// Package nodeagent stands in for the kubelet on the local control plane, where there are no
// containers: it registers a Node, binds the pods meant for it, and runs the project's own
// images as local processes, with the pod's environment and a kubeconfig that carries a
// TokenRequest token for the pod's ServiceAccount, so every API call an action makes is
// authorized by real RBAC. It writes the pod status a kubelet would write (phase, container
// states, termination message, exit code, times) and kills a pod's processes when the pod is
// deleted. An image it has no binary for fails like a kubelet's ErrImagePull.
package nodeagent

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Config configures an Agent.
type Config struct {
	// NodeName is the Node the agent registers and runs pods for; unscheduled pods are bound to it.
	NodeName string
	// ExtraNodes are more Nodes the agent registers and runs the pods of, for tests that
	// cordon or drain a node other than the one everything else runs on.
	ExtraNodes []string
	// Client acts for the agent (an administrator on the local control plane).
	Client kubernetes.Interface
	// RESTConfig gives the API server's address and CA for the pods' kubeconfigs.
	RESTConfig *rest.Config
	// Images maps an image repository (the reference without tag or digest) to the binary
	// that runs it.
	Images map[string]string
	// LoadedImages is a folder of images loaded while the agent runs (LoadImage), looked up when
	// Images has no binary for an image.
	LoadedImages string
	// Dir holds per-pod files: kubeconfig, termination messages, logs, volumes.
	Dir string
	// Network, when set, gives each pod its own address in a network namespace; otherwise pods
	// share the host's loopback address.
	Network *PodNetwork
}

// Agent is a running node agent.
type Agent struct {
	cfg Config

	mu         sync.Mutex
	pods       map[types.UID]*podRun
	ready      chan struct{}
	logPort    int
	stopServer func()
}

// Process is what the agent knows of one container's process.
type Process struct {
	Namespace, Pod, Container string
	PID                       int
	Exited                    bool
	ExitCode                  int
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.NodeName == "" {
		cfg.NodeName = "local-node"
	}
	return &Agent{cfg: cfg, pods: map[types.UID]*podRun{}, ready: make(chan struct{})}
}

// Ready is closed once the Node is registered and the agent watches pods.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Processes returns the processes the agent has started, for tests that check a process is
// really gone.
func (a *Agent) Processes() []Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Process
	for _, p := range a.pods {
		out = append(out, p.processes()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// Run registers the Node and runs pods until ctx ends; then it kills every process it started.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.Dir, 0o700); err != nil {
		return err
	}
	port, err := a.serveLogs()
	if err != nil {
		return fmt.Errorf("serving container logs: %w", err)
	}
	a.logPort = port
	defer a.stopServer()
	for _, name := range a.nodes() {
		if err := a.registerNode(ctx, name); err != nil {
			return fmt.Errorf("registering node %s: %w", name, err)
		}
	}
	factory := informers.NewSharedInformerFactory(a.cfg.Client, 0)
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.sync(ctx, obj) },
		UpdateFunc: func(_, obj any) { a.sync(ctx, obj) },
		DeleteFunc: func(obj any) { a.forget(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	close(a.ready)
	<-ctx.Done()
	factory.Shutdown()
	a.mu.Lock()
	runs := make([]*podRun, 0, len(a.pods))
	for _, p := range a.pods {
		runs = append(runs, p)
	}
	a.mu.Unlock()
	for _, p := range runs {
		p.kill(2 * time.Second)
	}
	return nil
}

// nodes are every Node the agent stands for.
func (a *Agent) nodes() []string { return append([]string{a.cfg.NodeName}, a.cfg.ExtraNodes...) }

// registerNode creates (or refreshes) a Node with a Ready condition, the loopback address and
// the port of the log endpoint.
func (a *Agent) registerNode(ctx context.Context, name string) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
	}}
	if _, err := nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status = corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity, Phase: corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "local node agent is ready", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			// Only the address: the API server would dial a Hostname address first, and the node's
			// name does not resolve.
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.logPort)}}, //nolint:gosec // G115: a TCP port is at most 65535.
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64",
				ContainerRuntimeVersion: "local-process://1",
			},
		}
		if n, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return LiftNotReadyTaint(ctx, nodes, n)
	})
}

// LiftNotReadyTaint removes the not-ready taint the API server puts on a new Node. The node
// lifecycle controller, which would lift it once the node is Ready, does not run on the local
// control plane, so whatever runs the node's pods lifts it.
func LiftNotReadyTaint(ctx context.Context, nodes typedcorev1.NodeInterface, n *corev1.Node) error {
	kept := make([]corev1.Taint, 0, len(n.Spec.Taints))
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(n.Spec.Taints) {
		return nil
	}
	n.Spec.Taints = kept
	_, err := nodes.Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// sync acts on one pod event: bind it if it is unscheduled, stop it if it is being deleted,
// start it if it is ours and not started.
func (a *Agent) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil:
		a.bind(ctx, pod)
	case !slices.Contains(a.nodes(), pod.Spec.NodeName):
	case pod.DeletionTimestamp != nil:
		go a.stop(ctx, pod)
	case pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "":
		a.mu.Lock()
		_, known := a.pods[pod.UID]
		if !known {
			run := newPodRun(a, pod)
			a.pods[pod.UID] = run
			go run.start(ctx)
		}
		a.mu.Unlock()
	}
}

// bind plays the scheduler's part: every pod goes to the one node.
func (a *Agent) bind(ctx context.Context, pod *corev1.Pod) {
	if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
		return
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.nodeFor(pod)},
	}
	err := a.cfg.Client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		klog.ErrorS(err, "binding pod", "pod", klog.KObj(pod))
	}
}

// nodeFor picks the node a pod must run on: the one its required node affinity names by
// metadata.name (as DaemonSet pods do), else the main node.
func (a *Agent) nodeFor(pod *corev1.Pod) string {
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return a.cfg.NodeName
	}
	for _, term := range aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn {
				for _, v := range f.Values {
					if slices.Contains(a.nodes(), v) {
						return v
					}
				}
			}
		}
	}
	return a.cfg.NodeName
}

// stop kills a deleted pod's processes, then finishes the deletion as a kubelet does, with a
// zero grace period.
func (a *Agent) stop(ctx context.Context, pod *corev1.Pod) {
	a.mu.Lock()
	run := a.pods[pod.UID]
	a.mu.Unlock()
	if run != nil {
		grace := 10 * time.Second
		if g := pod.DeletionGracePeriodSeconds; g != nil {
			grace = min(time.Duration(*g)*time.Second, grace)
		}
		run.kill(grace)
		run.report(ctx)
	}
	err := a.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "finishing pod deletion", "pod", klog.KObj(pod))
	}
}

// forget drops a deleted pod, killing anything it left running, and removes its files.
func (a *Agent) forget(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	run := a.pods[pod.UID]
	delete(a.pods, pod.UID)
	a.mu.Unlock()
	if run != nil {
		run.kill(0)
		run.releaseAddress()
		_ = os.RemoveAll(run.dir)
	}
}

// binaryFor returns the binary for an image, or an error like a kubelet's pull failure.
func (a *Agent) binaryFor(image string) (string, error) {
	if b, ok := a.cfg.Images[image]; ok {
		return b, nil
	}
	if b, ok := a.cfg.Images[repository(image)]; ok {
		return b, nil
	}
	if a.cfg.LoadedImages != "" {
		b := loadedPath(a.cfg.LoadedImages, image)
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	known := make([]string, 0, len(a.cfg.Images))
	for k := range a.cfg.Images {
		known = append(known, k)
	}
	sort.Strings(known)
	return "", fmt.Errorf("failed to pull image %q: the local node agent runs only the project's own images (%s) and those loaded with localcluster load-image",
		image, strings.Join(known, ", "))
}

// LoadImage makes the agent whose Config.LoadedImages is dir run binary for image (any tag or
// digest of its repository), as loading an image into a local cluster does: the binary is
// copied, so rebuilding it later changes nothing until it is loaded again.
func LoadImage(dir, image, binary string) error {
	src, err := os.ReadFile(filepath.Clean(binary))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".load-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(src); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil { //nolint:gosec // G302: it is a program to run.
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), loadedPath(dir, image))
}

// loadedPath is where LoadImage keeps the binary of image's repository.
func loadedPath(dir, image string) string {
	return filepath.Join(dir, url.PathEscape(repository(image)))
}

// repository strips the tag or digest from an image reference.
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

func podDir(root string, pod *corev1.Pod) string {
	return filepath.Join(root, "pods", string(pod.UID))
}
