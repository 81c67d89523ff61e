// Package managerproc runs the shipped manager binary (bin/manager, built by make build) as a
// process of its own against a local control plane: as the manager's ServiceAccount (a token
// from the TokenRequest API in a kubeconfig of its own), serving the webhooks where the cluster's
// webhook configurations point, with its metrics (and, if asked, pprof) on free local ports.
//
// A process of its own, rather than a manager inside the test process, is what the scale
// benchmark needs to measure the manager's own memory and CPU, and what the fault suite needs to
// SIGKILL it at any moment and start it again, as a crash and a restart of its pod would.
package managerproc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// Options configure a manager process.
type Options struct {
	// Dir receives the manager's kubeconfig and its log, manager.log. The log is appended to, so
	// the runs of a manager started again in the same folder follow each other in one file.
	Dir string
	// Args are extra flags (for example --job-ttl=10s); the ones Start sets come first, so a
	// flag given here again wins.
	Args []string
	// Pprof serves Go's profiles on a free port (PprofAddr) when the binary has the flag.
	Pprof bool
	// ReadyTimeout bounds the wait for the metrics endpoint to answer; 60 seconds when zero.
	ReadyTimeout time.Duration
}

// Process is a running manager.
type Process struct {
	// LogPath is the file that receives the manager's output.
	LogPath string
	// MetricsAddr is where the manager serves /metrics.
	MetricsAddr string
	// PprofAddr is where the manager serves /debug/pprof/, "" when it does not.
	PprofAddr string
	// Args are the flags the manager runs with.
	Args []string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs the manager binary of e2eutil.BinDir() against c and returns once its metrics
// endpoint answers (the webhooks are for the caller to probe, with a first admission).
func Start(ctx context.Context, c *localcluster.Cluster, opts Options) (*Process, error) {
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, err
	}
	kubeconfig, err := writeKubeconfig(ctx, c, filepath.Join(opts.Dir, "manager.kubeconfig"))
	if err != nil {
		return nil, err
	}
	p := &Process{LogPath: filepath.Join(opts.Dir, "manager.log"), done: make(chan struct{})}
	if p.MetricsAddr, err = FreeAddr(); err != nil {
		return nil, err
	}
	bin := filepath.Join(e2eutil.BinDir(), "manager")
	p.Args = []string{
		"--kubeconfig=" + kubeconfig,
		"--namespace=" + e2eutil.Namespace,
		"--metrics-bind-address=" + p.MetricsAddr,
		"--health-probe-bind-address=0",
		"--webhook-host=" + c.Webhook.Host,
		fmt.Sprintf("--webhook-port=%d", c.Webhook.Port),
		"--webhook-cert-dir=" + c.Webhook.CertDir,
		"--action-images=kubernaut-actions=" + localcluster.ActionsImage + ":bench",
	}
	if opts.Pprof && supports(bin, "--pprof-bind-address") {
		if p.PprofAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
		p.Args = append(p.Args, "--pprof-bind-address="+p.PprofAddr)
	}
	p.Args = append(p.Args, opts.Args...)
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, p.Args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	// Ready once its metrics answer: its caches may still be syncing, and a restarted manager's
	// controllers start from whatever they find.
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	for deadline := time.Now().Add(timeout); ; {
		if _, err := p.Metrics(ctx); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("the manager exited (see %s): %v", p.LogPath, p.err)
		case <-ctx.Done():
			_ = p.Kill()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, fmt.Errorf("the manager did not serve its metrics within %s (see %s)", timeout, p.LogPath)
		}
	}
}

// writeKubeconfig writes a kubeconfig that authenticates as the manager's ServiceAccount.
func writeKubeconfig(ctx context.Context, c *localcluster.Cluster, path string) (string, error) {
	cfg, err := e2eutil.TokenConfig(ctx, c.Config, e2eutil.Namespace, "kubernaut-executor")
	if err != nil {
		return "", err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "manager"}
	kc.CurrentContext = "local"
	return path, clientcmd.WriteToFile(*kc, path)
}

// supports reports whether the binary has a flag, from its usage text.
func supports(bin, flag string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return strings.Contains(string(out), strings.TrimLeft(flag, "-")+" ")
}

// Pid is the manager's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited, however it ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and with what (nil for exit status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the manager as Kubernetes would: SIGTERM, then SIGKILL after a grace period of
// 15 seconds. It returns the exit error (the manager exits 0 on SIGTERM; anything else is worth
// reporting). A process that has already exited is left alone.
func (p *Process) Stop() error {
	if done, err := p.Exited(); done {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("the manager did not stop within 15s of SIGTERM (killed: %v)", p.err)
	}
}

// Kill ends the manager with SIGKILL, as a crash or an OOM kill would, between any two of its
// instructions, and waits until it is gone. It returns an error only when the signal could not
// be sent to a running process.
func (p *Process) Kill() error {
	if done, _ := p.Exited(); done {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		if done, _ := p.Exited(); !done {
			return fmt.Errorf("killing the manager: %w", err)
		}
	}
	<-p.done
	return nil
}

// Metrics reads and parses the manager's metrics endpoint.
func (p *Process) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
