package e2eutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kubernaut/kubernaut-executor/internal/manager"
)

// MetricsEndpoint is a manager's metrics endpoint on a loopback port, read as Prometheus reads
// it: the suites check the executor's metrics by name, labels and value as they are served, not
// in the process's Go variables.
type MetricsEndpoint struct {
	mu   sync.Mutex
	addr string
	err  error
}

// Option returns the manager option that turns the endpoint on (pass it to StartInstalled). The
// port is chosen when the manager is first built, once the control plane has taken its own, and
// kept when the manager is restarted.
func (m *MetricsEndpoint) Option() func(*manager.Options) {
	return func(o *manager.Options) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.addr == "" && m.err == nil {
			m.addr, m.err = freeLoopbackAddress()
		}
		o.MetricsBindAddress = m.addr
	}
}

// Scrape reads the endpoint once, in the Prometheus text format.
func (m *MetricsEndpoint) Scrape(ctx context.Context) (Metrics, error) {
	m.mu.Lock()
	addr, err := m.addr, m.err
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("no port for the metrics endpoint: %w", err)
	}
	if addr == "" {
		return nil, fmt.Errorf("the metrics endpoint is not on: pass its Option to the manager")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", req.URL, err)
	}
	return families, nil
}

func freeLoopbackAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// Metrics is one scrape: the metric families by name.
type Metrics map[string]*dto.MetricFamily

// Labels is a series' complete set of labels.
type Labels map[string]string

// Type returns the type of the family name, "" when the scrape has no such family.
func (m Metrics) Type(name string) string {
	f, ok := m[name]
	if !ok {
		return ""
	}
	return f.GetType().String()
}

// LabelNames returns the label names the series of family name carry, each set sorted, one
// entry per distinct set (a well-formed family has exactly one).
func (m Metrics) LabelNames(name string) [][]string {
	var sets [][]string
	for _, s := range m[name].GetMetric() {
		var names []string
		for _, l := range s.GetLabel() {
			names = append(names, l.GetName())
		}
		slices.Sort(names)
		if !slices.ContainsFunc(sets, func(set []string) bool { return slices.Equal(set, names) }) {
			sets = append(sets, names)
		}
	}
	return sets
}

// series returns the series of family name whose labels are exactly l, nil when there is none.
func (m Metrics) series(name string, l Labels) *dto.Metric {
	for _, s := range m[name].GetMetric() {
		if len(s.GetLabel()) != len(l) {
			continue
		}
		match := true
		for _, p := range s.GetLabel() {
			if v, ok := l[p.GetName()]; !ok || v != p.GetValue() {
				match = false
				break
			}
		}
		if match {
			return s
		}
	}
	return nil
}

// Value returns the value of the counter or gauge series of name with exactly the labels l: 0
// when there is no such series (a vector's series appears with its first increment).
func (m Metrics) Value(name string, l Labels) float64 {
	s := m.series(name, l)
	if s == nil {
		return 0
	}
	if c := s.GetCounter(); c != nil {
		return c.GetValue()
	}
	return s.GetGauge().GetValue()
}

// Histogram is one histogram series: how many observations, their sum, and the cumulative count
// of each bucket by its upper bound (+Inf included).
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Histogram returns the histogram series of name with exactly the labels l; empty when there is
// no such series.
func (m Metrics) Histogram(name string, l Labels) Histogram {
	h := Histogram{Buckets: map[float64]uint64{}}
	s := m.series(name, l)
	if s == nil || s.GetHistogram() == nil {
		return h
	}
	h.Count, h.Sum = s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum()
	for _, b := range s.GetHistogram().GetBucket() {
		h.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return h
}

// Sub returns what was observed between the scrape of before and the scrape of h (the same
// series, before first): counts, sum and each bucket's cumulative count.
func (h Histogram) Sub(before Histogram) Histogram {
	d := Histogram{Count: h.Count - before.Count, Sum: h.Sum - before.Sum, Buckets: map[float64]uint64{}}
	for le, n := range h.Buckets {
		d.Buckets[le] = n - before.Buckets[le]
	}
	return d
}
