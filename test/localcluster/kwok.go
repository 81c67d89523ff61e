package localcluster

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kubernaut/kubernaut-executor/test/nodeagent"
)

// kwokStages are the stages kwok plays on the Node and its pods; each file says what it does.
//
//go:embed kwok/*.yaml
var kwokStages embed.FS

const (
	// kwokNodeLabel selects the Nodes kwok manages; kwokNodeAnnotation marks them fake, as
	// kwok's own tools mark the Nodes they create.
	kwokNodeLabel, kwokNodeLabelValue = "type", "kwok"
	kwokNodeAnnotation                = "kwok.x-k8s.io/node"
	// kwokNodeIP is the Node's address and every pod's host IP. Nothing listens there for the
	// kubelet API (logs, exec): the API server's calls fail at once rather than time out.
	kwokNodeIP = "127.0.0.1"
	// kwokPodCIDR is where kwok takes pod IPs from: room for the Node's 100000 pods.
	kwokPodCIDR = "10.128.0.0/14"
)

// startKwok runs kube-scheduler and kwok, registers the Node KwokNodeName and returns once kwok
// has made it Ready and it takes pods.
func (c *Cluster) startKwok(ctx context.Context, opts Options, cs kubernetes.Interface) error {
	var err error
	c.scheduler, err = startProcess(filepath.Join(opts.Dir, "kube-scheduler.log"), nil,
		filepath.Join(opts.AssetsDir, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	)
	if err != nil {
		return err
	}
	args, err := writeKwokStages(filepath.Join(opts.Dir, "kwok"))
	if err != nil {
		return err
	}
	args = append(args,
		"--kubeconfig="+c.Kubeconfig,
		"--manage-nodes-with-label-selector="+kwokNodeLabel+"="+kwokNodeLabelValue,
		"--node-ip="+kwokNodeIP,
	)
	// kwok also reads $KWOK_WORKDIR/kwok.yaml (default ~/.kwok): keep a user's own out.
	env := []string{"KWOK_WORKDIR=" + filepath.Join(opts.Dir, "kwok")}
	if c.kwok, err = startProcess(filepath.Join(opts.Dir, "kwok.log"), env, opts.Kwok, args...); err != nil {
		return err
	}
	if err := createKwokNode(ctx, cs); err != nil {
		return fmt.Errorf("creating the node %s: %w", KwokNodeName, err)
	}
	if err := c.waitForKwokNode(ctx, cs); err != nil {
		return fmt.Errorf("node %s did not become ready (see %s): %w", KwokNodeName, c.kwok.log, err)
	}
	return nil
}

// writeKwokStages writes the embedded stages into dir and returns kwok's flags that load them.
func writeKwokStages(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	files, err := fs.Glob(kwokStages, "kwok/*.yaml")
	if err != nil {
		return nil, err
	}
	var args []string
	for _, f := range files {
		data, err := kwokStages.ReadFile(f)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config="+path)
	}
	return args, nil
}

// createKwokNode registers the Node kwok runs pods on, untainted and sized for tens of
// thousands of pods; kwok fills in its status.
func createKwokNode(ctx context.Context, cs kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   resource.MustParse("100000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: KwokNodeName,
			Labels: map[string]string{
				kwokNodeLabel:          kwokNodeLabelValue,
				corev1.LabelHostname:   KwokNodeName,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: "amd64",
			},
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
		Spec:   corev1.NodeSpec{PodCIDR: kwokPodCIDR, PodCIDRs: []string{kwokPodCIDR}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	return err
}

// waitForKwokNode waits for kwok to make the Node Ready, then lifts the not-ready taint the API
// server put on it at creation: the node lifecycle controller, which would lift it, does not
// run here.
func (c *Cluster) waitForKwokNode(ctx context.Context, cs kubernetes.Interface) error {
	nodes := cs.CoreV1().Nodes()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if c.kwok.exited() {
			return false, errors.New("kwok exited")
		}
		n, err := nodes.Get(ctx, KwokNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return nodeReady(n), nil
	})
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, KwokNodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return nodeagent.LiftNotReadyTaint(ctx, nodes, n)
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
