package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
)

// The local control plane (test/localcluster, through envtest) offers no way to restart its
// kube-apiserver or etcd. Rather than change it, scenario 3 restarts them as an operator would
// restart a static pod: it reads the running process's command line, environment and working
// folder from /proc, stops it (SIGTERM, as the kubelet does), and starts the same binary again
// with the same command line. etcd comes back on the same data folder, so nothing stored is
// lost, and the API server on the same port, certificates and audit log (opened for appending).
//
// envtest still holds the original processes, which have exited; its Stop leaves an exited
// process alone. The suite therefore stops the processes it started itself before it stops the
// control plane (suite.restarted).

// restartedProcess is a control plane process the suite started again in place of the one it
// stopped.
type restartedProcess struct {
	name string
	args []string
	env  []string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// gracePeriod is how long a stopped control plane process has to exit after SIGTERM before it
// is killed, as a kubelet gives a static pod. The API server stops listening at once and
// finishes its requests in flight (writing their audit events) within a second or two; its
// shutdown then waits on its long-running connections for much longer than a scenario should.
const gracePeriod = 5 * time.Second

// stop stops the process: SIGTERM, then SIGKILL after the grace period.
func (p *restartedProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(gracePeriod):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// restartControlPlane stops the control plane process named name (kube-apiserver or etcd), waits
// for down, starts it again with the same command line, and returns once the API server is
// ready again (its /readyz checks etcd too).
func restartControlPlane(ctx context.Context, name string, down time.Duration, logPath string) error {
	var proc *restartedProcess
	for i, p := range s.restarted {
		if p.name == name {
			// Already restarted once: this suite's own process.
			proc = p
			s.restarted = append(s.restarted[:i], s.restarted[i+1:]...)
			proc.stop()
			break
		}
	}
	if proc == nil {
		var err error
		if proc, err = stopChild(name); err != nil {
			return err
		}
	}
	sleep(ctx, down)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(proc.args[0], proc.args[1:]...)
	cmd.Env, cmd.Dir = proc.env, proc.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as envtest starts them
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting %s again: %w", name, err)
	}
	started := &restartedProcess{name: name, args: proc.args, env: proc.env, dir: proc.dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(started.done)
	}()
	s.restarted = append(s.restarted, started)
	return waitAPIReady(ctx, started)
}

// stopChild finds the running child of this process named name, reads how it was started, and
// stops it: SIGTERM, then SIGKILL after the grace period.
func stopChild(name string) (*restartedProcess, error) {
	pid, err := childNamed(name)
	if err != nil {
		return nil, err
	}
	proc := fmt.Sprintf("/proc/%d", pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return nil, err
	}
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		return nil, err
	}
	dir, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return nil, err
	}
	p := &restartedProcess{name: name, args: split(cmdline), env: split(environ), dir: dir}
	if len(p.args) == 0 {
		return nil, fmt.Errorf("%s (pid %d) has no command line", name, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("stopping %s (pid %d): %w", name, pid, err)
	}
	// envtest waits for its process, so it is reaped as soon as it exits.
	for deadline := time.Now().Add(gracePeriod); running(pid); {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p, nil
}

// childNamed returns the pid of the running child of this process whose name is name.
func childNamed(name string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, state, ok := stat(pid)
		if ok && comm == name && ppid == self && state != "Z" {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no running %s started by this process", name)
}

// stat reads a process's name, parent pid and state from /proc/<pid>/stat.
func stat(pid int) (comm, ppid, state string, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", "", "", false
	}
	st := string(b)
	open, closing := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
	if open < 0 || closing < open {
		return "", "", "", false
	}
	f := strings.Fields(st[closing+1:])
	if len(f) < 2 {
		return "", "", "", false
	}
	return st[open+1 : closing], f[1], f[0], true
}

// running reports whether the process exists and has not exited.
func running(pid int) bool {
	_, _, state, ok := stat(pid)
	return ok && state != "Z"
}

// split splits a NUL-separated list from /proc.
func split(b []byte) []string {
	var out []string
	for _, f := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		if len(f) > 0 {
			out = append(out, string(f))
		}
	}
	return out
}

// waitAPIReady waits until the API server answers /readyz (which checks etcd) with ok, or the
// restarted process exits.
func waitAPIReady(ctx context.Context, p *restartedProcess) error {
	cs, err := kubernetes.NewForConfig(s.cluster.Config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited after it was started again", p.name)
		default:
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("the API server was not ready 2 minutes after %s was started again", p.name), err)
		}
		sleep(ctx, 250*time.Millisecond)
	}
}
