package nodeagent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// maxTerminationMessage is the kubelet's limit on one container's termination message.
const maxTerminationMessage = 4096

// podRun is one pod's processes.
type podRun struct {
	agent *Agent
	pod   *corev1.Pod
	dir   string

	mu         sync.Mutex
	killed     bool
	podIP      string
	started    metav1.Time
	containers []*containerRun
}

// containerRun is one container's process and what became of it.
type containerRun struct {
	spec      corev1.Container
	cmd       *exec.Cmd
	logs      *logWriter
	termPath  string
	logPath   string
	done      chan struct{}
	startedAt metav1.Time
	waiting   *corev1.ContainerStateWaiting
	exit      *corev1.ContainerStateTerminated
	// ready is true once the readiness probe passed (at start when there is none).
	ready bool
	// newCmd makes the process again, for a restart.
	newCmd func() *exec.Cmd
	// restarts counts restarts; last is the state before the latest one.
	restarts int32
	last     *corev1.ContainerStateTerminated
}

func newPodRun(a *Agent, pod *corev1.Pod) *podRun {
	return &podRun{agent: a, pod: pod.DeepCopy(), dir: podDir(a.cfg.Dir, pod)}
}

// start prepares and starts every container of the pod, then reports the pod Running; or
// reports why a container cannot start.
func (p *podRun) start(ctx context.Context) {
	p.mu.Lock()
	p.started = metav1.Now()
	p.podIP = "127.0.0.1"
	if n := p.agent.cfg.Network; n != nil {
		addr, err := n.Allocate()
		if err != nil {
			klog.ErrorS(err, "allocating a pod address", "pod", klog.KObj(p.pod))
		} else {
			p.podIP = addr
		}
	}
	for _, c := range p.pod.Spec.Containers {
		p.containers = append(p.containers, &containerRun{spec: c, done: make(chan struct{})})
	}
	failed := p.prepare(ctx)
	if !failed {
		for _, c := range p.containers {
			if err := c.cmd.Start(); err != nil {
				c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
				failed = true
				continue
			}
			c.startedAt = metav1.Now()
			c.ready = c.spec.ReadinessProbe == nil || c.spec.ReadinessProbe.HTTPGet == nil
		}
	}
	p.mu.Unlock()
	p.report(ctx)
	if failed {
		p.kill(0)
		return
	}
	for _, c := range p.containers {
		go p.wait(ctx, c)
		if !c.ready {
			go p.probe(ctx, c)
		}
	}
}

// probe polls a container's HTTP readiness probe until it answers 2xx, then reports the pod.
func (p *podRun) probe(ctx context.Context, c *containerRun) {
	get := c.spec.ReadinessProbe.HTTPGet
	port := get.Port.IntValue()
	for _, cp := range c.spec.Ports {
		if get.Port.String() == cp.Name {
			port = int(cp.ContainerPort)
		}
	}
	url := fmt.Sprintf("http://%s:%d%s", p.podIP, port, get.Path)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-time.After(500 * time.Millisecond):
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			p.mu.Lock()
			c.ready = true
			p.mu.Unlock()
			p.report(ctx)
			return
		}
	}
}

// releaseAddress returns the pod's address to the pod network.
func (p *podRun) releaseAddress() {
	if n := p.agent.cfg.Network; n != nil && p.podIP != "127.0.0.1" {
		n.Release(p.podIP)
	}
}

// prepare resolves images, environment and credentials; it records a waiting reason on each
// container that cannot start, as a kubelet does, and reports whether any cannot.
func (p *podRun) prepare(ctx context.Context) (failed bool) {
	if err := os.MkdirAll(filepath.Join(p.dir, "tmp"), 0o700); err != nil {
		return p.failAll("CreateContainerError", err.Error())
	}
	var kubeconfig string
	if ptr.Deref(p.pod.Spec.AutomountServiceAccountToken, true) {
		var err error
		if kubeconfig, err = p.writeKubeconfig(ctx); err != nil {
			return p.failAll("CreateContainerConfigError", err.Error())
		}
	}
	for _, c := range p.containers {
		binary, err := p.agent.binaryFor(c.spec.Image)
		if err != nil {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}
			failed = true
			continue
		}
		env, err := p.agent.resolveEnv(ctx, p.pod, &c.spec, p.podIP)
		if err != nil {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
			failed = true
			continue
		}
		mounts, err := p.mountVolumes(ctx, &c.spec)
		if err != nil {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
			failed = true
			continue
		}

		c.termPath = filepath.Join(p.dir, c.spec.Name+".termination-log")
		c.logPath = filepath.Join(p.dir, c.spec.Name+".log")
		env = append(env,
			"TERMINATION_MESSAGE_PATH="+c.termPath,
			"HOME="+p.dir, "TMPDIR="+filepath.Join(p.dir, "tmp"), "PATH=/usr/local/bin:/usr/bin:/bin")
		if kubeconfig != "" {
			env = append(env, "KUBECONFIG="+kubeconfig)
		}
		if c.logs, err = newLogWriter(c.logPath); err != nil {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
			failed = true
			continue
		}
		// The image's entrypoint is the binary: command[0] names it, the rest are arguments.
		var argv []string
		if len(c.spec.Command) > 1 {
			argv = append(argv, c.spec.Command[1:]...)
		}
		argv = append(argv, c.spec.Args...)
		for i := range argv {
			argv[i] = mounts.Replace(argv[i])
		}
		network, dir, logs := p.agent.cfg.Network, p.dir, c.logs
		c.newCmd = func() *exec.Cmd {
			var cmd *exec.Cmd
			if network != nil {
				cmd = network.Command(binary, argv...)
			} else {
				cmd = exec.Command(binary, argv...)
			}
			cmd.Env, cmd.Dir = env, dir
			cmd.Stdout, cmd.Stderr = logs.stream("stdout"), logs.stream("stderr")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return cmd
		}
		c.cmd = c.newCmd()
	}
	return failed
}

func (p *podRun) failAll(reason, message string) bool {
	for _, c := range p.containers {
		c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
	}
	return true
}

// writeKubeconfig requests a token for the pod's ServiceAccount, bound to the pod (it stops
// working when the pod is deleted), and writes a kubeconfig that uses it.
func (p *podRun) writeKubeconfig(ctx context.Context) (string, error) {
	sa := p.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := p.agent.cfg.Client.CoreV1().ServiceAccounts(p.pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.pod.Name, UID: p.pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for serviceaccount %s/%s: %w", p.pod.Namespace, sa, err)
	}
	rc := p.agent.cfg.RESTConfig
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "pod", Namespace: p.pod.Namespace}
	cfg.CurrentContext = "pod"
	path := filepath.Join(p.dir, "kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// wait records a container's exit, with its termination message, and reports the pod; a
// container the pod's restart policy restarts is started again after a growing delay.
func (p *podRun) wait(ctx context.Context, c *containerRun) {
	for p.waitOnce(ctx, c) {
	}
}

// waitOnce waits for one run of the container and reports whether it was restarted.
func (p *podRun) waitOnce(ctx context.Context, c *containerRun) bool {
	err := c.cmd.Wait()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
	term := &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: "Completed", StartedAt: c.startedAt, FinishedAt: metav1.Now(),
		ContainerID: fmt.Sprintf("local://%d", c.cmd.Process.Pid),
	}
	if code != 0 {
		term.Reason = "Error"
	}
	term.Message = terminationMessage(c, code)
	policy := p.pod.Spec.RestartPolicy
	restart := policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && code != 0)
	p.mu.Lock()
	killed := p.killed
	if restart && !killed {
		c.last, c.restarts, c.ready = term, c.restarts+1, false
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off restarting after exit code %d", code)}
		p.mu.Unlock()
		p.report(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(c.restarts)*time.Second, 10*time.Second)):
		}
		p.mu.Lock()
		if !p.killed && ctx.Err() == nil {
			c.waiting = nil
			c.cmd = c.newCmd()
			if err := c.cmd.Start(); err == nil {
				c.startedAt = metav1.Now()
				c.ready = c.spec.ReadinessProbe == nil || c.spec.ReadinessProbe.HTTPGet == nil
				p.mu.Unlock()
				p.report(ctx)
				if !c.ready {
					go p.probe(ctx, c)
				}
				return true
			}
		}
	}
	c.exit = term
	p.mu.Unlock()
	c.logs.Close()
	close(c.done)
	if !killed {
		p.report(ctx)
	}
	return false
}

// terminationMessage reads what the container wrote to its termination message path, or, for a
// failed container whose policy says so, the tail of its log.
func terminationMessage(c *containerRun, code int) string {
	b, _ := os.ReadFile(c.termPath)
	if len(b) > maxTerminationMessage {
		b = b[:maxTerminationMessage]
	}
	if len(b) == 0 && code != 0 && c.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		return tailLog(c.logPath, 80, 2048)
	}
	return string(b)
}

// kill stops every process of the pod: SIGTERM to its process group, SIGKILL after grace.
func (p *podRun) kill(grace time.Duration) {
	p.mu.Lock()
	p.killed = true
	var running []*containerRun
	for _, c := range p.containers {
		if c.cmd != nil && c.cmd.Process != nil && c.exit == nil {
			running = append(running, c)
		}
	}
	p.mu.Unlock()
	for _, c := range running {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, c := range running {
		select {
		case <-c.done:
		case <-deadline:
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
}

// processes describes the pod's processes.
func (p *podRun) processes() []Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Process
	for _, c := range p.containers {
		if c.cmd == nil || c.cmd.Process == nil {
			continue
		}
		pr := Process{Namespace: p.pod.Namespace, Pod: p.pod.Name, Container: c.spec.Name, PID: c.cmd.Process.Pid}
		if c.exit != nil {
			pr.Exited, pr.ExitCode = true, int(c.exit.ExitCode)
		}
		out = append(out, pr)
	}
	return out
}

// report writes the pod's status as the agent sees it now.
func (p *podRun) report(ctx context.Context) {
	pods := p.agent.cfg.Client.CoreV1().Pods(p.pod.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, p.pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.mu.Lock()
		killed := p.killed
		p.mu.Unlock()
		// A pod being deleted gets one last, terminal status once its processes are gone, as a
		// kubelet writes before it finishes the deletion (the Job controller's pod failure
		// policy reads it).
		if cur.UID != p.pod.UID || (cur.DeletionTimestamp != nil && !killed) {
			return nil
		}
		p.mu.Lock()
		p.fillStatus(&cur.Status)
		p.mu.Unlock()
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		klog.ErrorS(err, "writing pod status", "pod", klog.KObj(p.pod))
	}
}

// fillStatus sets phase, addresses, container states and the conditions the agent owns;
// conditions set by others (such as DisruptionTarget) are kept.
func (p *podRun) fillStatus(s *corev1.PodStatus) {
	s.HostIP, s.PodIP = "127.0.0.1", p.podIP
	s.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	s.PodIPs = []corev1.PodIP{{IP: p.podIP}}
	s.StartTime = &p.started
	s.ContainerStatuses = nil
	waiting, running, failed, notReady := false, false, false, false
	for _, c := range p.containers {
		cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: c.spec.Image, RestartCount: c.restarts}
		if c.last != nil {
			cs.LastTerminationState.Terminated = c.last
		}
		switch {
		case c.waiting != nil:
			cs.State.Waiting = c.waiting
			// A container waiting to restart keeps the pod Running, as with a kubelet.
			waiting = waiting || c.restarts == 0
			running = running || c.restarts > 0
			notReady = true
		case c.exit != nil:
			cs.State.Terminated = c.exit
			cs.ContainerID = c.exit.ContainerID
			failed = failed || c.exit.ExitCode != 0
		default:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
			cs.ContainerID = fmt.Sprintf("local://%d", c.cmd.Process.Pid)
			cs.Ready, cs.Started = c.ready, ptr.To(true)
			running = true
			notReady = notReady || !c.ready
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	ready, reason := corev1.ConditionFalse, "ContainersNotReady"
	switch {
	case waiting:
		s.Phase = corev1.PodPending
	case running && notReady:
		s.Phase = corev1.PodRunning
	case running:
		s.Phase, ready, reason = corev1.PodRunning, corev1.ConditionTrue, ""
	case failed:
		s.Phase, reason = corev1.PodFailed, "PodCompleted"
	default:
		s.Phase, reason = corev1.PodSucceeded, "PodCompleted"
	}
	now := metav1.Now()
	for _, c := range []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason},
		{Type: corev1.PodReady, Status: ready, Reason: reason},
	} {
		setPodCondition(s, c, now)
	}
}

func setPodCondition(s *corev1.PodStatus, c corev1.PodCondition, now metav1.Time) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == c.Type {
			if s.Conditions[i].Status != c.Status {
				s.Conditions[i].LastTransitionTime = now
			}
			s.Conditions[i].Status, s.Conditions[i].Reason = c.Status, c.Reason
			return
		}
	}
	c.LastTransitionTime = now
	s.Conditions = append(s.Conditions, c)
}
