package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kubernaut/kubernaut-executor/test/localcluster"
	"github.com/kubernaut/kubernaut-executor/test/managerproc"
)

// managerProcess is the shipped manager binary, run by the benchmark as the manager's
// ServiceAccount, serving the webhooks where the cluster's webhook configurations point, with
// pprof when the binary serves it.
type managerProcess struct {
	*managerproc.Process
}

func startManager(ctx context.Context, c *localcluster.Cluster, dir string, extra []string) (*managerProcess, error) {
	p, err := managerproc.Start(ctx, c, managerproc.Options{Dir: dir, Args: extra, Pprof: true})
	if err != nil {
		return nil, err
	}
	return &managerProcess{Process: p}, nil
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
	if fams, err := m.Metrics(ctx); err == nil {
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
	if st, ok := readProc(m.Pid()); ok {
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
	if m.PprofAddr == "" {
		out <- ""
		return out
	}
	go func() {
		if err := fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", m.PprofAddr, int(d.Seconds())), path); err != nil {
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
	if m.PprofAddr != "" {
		if err = fetch(ctx, "http://"+m.PprofAddr+"/debug/pprof/heap?gc=1", path); err == nil {
			h.profile = path
		}
	}
	if fams, mErr := m.Metrics(ctx); mErr == nil {
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
