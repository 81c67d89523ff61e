package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// managerProcess is the shipped manager binary, run by the benchmark as the manager's
// ServiceAccount, serving the webhooks where the cluster's webhook configurations point.
type managerProcess struct {
	cmd         *exec.Cmd
	done        chan error
	logPath     string
	metricsAddr string
	pprofAddr   string
}

func startManager(ctx context.Context, c *localcluster.Cluster, dir string, extra []string) (*managerProcess, error) {
	cfg, err := e2eutil.TokenConfig(ctx, c.Config, e2eutil.Namespace, "kubernaut-executor")
	if err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "manager"}
	kc.CurrentContext = "bench"
	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		return nil, err
	}
	m := &managerProcess{logPath: filepath.Join(dir, "manager.log"), done: make(chan error, 1)}
	if m.metricsAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	bin := filepath.Join(e2eutil.BinDir(), "manager")
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--namespace=" + e2eutil.Namespace,
		"--metrics-bind-address=" + m.metricsAddr,
		"--health-probe-bind-address=0",
		"--webhook-host=" + c.Webhook.Host,
		fmt.Sprintf("--webhook-port=%d", c.Webhook.Port),
		"--webhook-cert-dir=" + c.Webhook.CertDir,
		"--action-images=kubernaut-actions=" + localcluster.ActionsImage + ":bench",
	}
	if supports(bin, "--pprof-bind-address") {
		if m.pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "--pprof-bind-address="+m.pprofAddr)
	}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin, append(args, extra...)...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	go func() { m.done <- m.cmd.Wait(); _ = logFile.Close() }()
	// Ready once its metrics answer (the webhooks are checked by the caller's first admission).
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := m.metrics(ctx); err == nil {
			return m, nil
		}
		select {
		case err := <-m.done:
			return nil, fmt.Errorf("the manager exited (see %s): %v", m.logPath, err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = m.stop()
			return nil, fmt.Errorf("the manager did not serve its metrics (see %s)", m.logPath)
		}
	}
}

// supports reports whether the binary has a flag, from its usage text.
func supports(bin, flag string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return strings.Contains(string(out), strings.TrimLeft(flag, "-")+" ")
}

func (m *managerProcess) pid() int { return m.cmd.Process.Pid }

// stop ends the manager as Kubernetes would: SIGTERM, then SIGKILL after a grace period.
func (m *managerProcess) stop() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		// The manager exits 0 on SIGTERM; anything else is worth reporting.
		return err
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		err := <-m.done
		return fmt.Errorf("the manager did not stop within 15s of SIGTERM (killed: %v)", err)
	}
}

// sample is the manager's counters at one moment.
type sample struct {
	clientWrites float64
	reconciles   float64
	rssBytes     int64
	cpuSeconds   float64
	auditOffset  int64
}

// sample reads the manager's metrics and process figures, and the audit log's size.
func (m *managerProcess) sample(ctx context.Context, auditLog string) sample {
	var s sample
	if fams, err := m.metrics(ctx); err == nil {
		for _, metric := range family(fams, "rest_client_requests_total") {
			switch label(metric, "method") {
			case "POST", "PUT", "PATCH", "DELETE":
				s.clientWrites += metric.GetCounter().GetValue()
			}
		}
		for _, metric := range family(fams, "controller_runtime_reconcile_total") {
			if label(metric, "controller") == "kubernetesexecution" {
				s.reconciles += metric.GetCounter().GetValue()
			}
		}
	}
	if st, ok := readProc(m.pid()); ok {
		s.rssBytes, s.cpuSeconds = st.rssBytes, st.cpuSeconds
	}
	if st, err := os.Stat(auditLog); err == nil {
		s.auditOffset = st.Size()
	}
	return s
}

// profile takes a CPU profile of the manager for d, in the background, if it serves pprof;
// the channel yields the profile's path, or "" without one.
func (m *managerProcess) profile(ctx context.Context, path string, d time.Duration) <-chan string {
	out := make(chan string, 1)
	if m.pprofAddr == "" {
		out <- ""
		return out
	}
	go func() {
		if err := fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", m.pprofAddr, int(d.Seconds())), path); err != nil {
			out <- ""
			return
		}
		out <- path
	}()
	return out
}

// heapSample is the manager's heap after a forced garbage collection.
type heapSample struct {
	inuseBytes, allocBytes float64
	// profile is the heap profile's path, "" without one.
	profile string
}

// heap forces a garbage collection in the manager and saves its heap profile to path (if it
// serves pprof), then reads its heap figures from its metrics. The error says what is missing;
// whatever could be read is returned regardless.
func (m *managerProcess) heap(ctx context.Context, path string) (heapSample, error) {
	var h heapSample
	err := errors.New("the manager serves no pprof")
	if m.pprofAddr != "" {
		if err = fetch(ctx, "http://"+m.pprofAddr+"/debug/pprof/heap?gc=1", path); err == nil {
			h.profile = path
		}
	}
	if fams, mErr := m.metrics(ctx); mErr == nil {
		for _, metric := range family(fams, "go_memstats_heap_inuse_bytes") {
			h.inuseBytes = metric.GetGauge().GetValue()
		}
		for _, metric := range family(fams, "go_memstats_heap_alloc_bytes") {
			h.allocBytes = metric.GetGauge().GetValue()
		}
	} else {
		err = errors.Join(err, mErr)
	}
	return h, err
}

// fetch saves the body of a GET of url to path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

func (m *managerProcess) metrics(ctx context.Context) (map[string]*familyT, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metricsAddr+"/metrics", nil)
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

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// auditEvent is the part of an API server audit event the benchmark reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
}

// countWrites counts the manager's completed write requests in the API server's audit log from
// offset on, by verb and resource.
func countWrites(path string, offset int64) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if ev.Stage != "ResponseComplete" || ev.User.Username != managerUser || ev.ObjectRef == nil {
			continue
		}
		out[ShortName(ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Subresource)]++
	}
	return out, sc.Err()
}

type familyT = dto.MetricFamily

func family(fams map[string]*familyT, name string) []*dto.Metric {
	if f, ok := fams[name]; ok {
		return f.GetMetric()
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
