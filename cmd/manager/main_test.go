package main

import (
	"flag"
	"io"
	"log"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/controllers"
)

// chartArgs renders the chart's manager Deployment with values and returns its container's args.
func chartArgs(t *testing.T, values map[string]any) []string {
	t.Helper()
	log.SetOutput(io.Discard) // the loader's notes about the chart's links into the repository
	_, file, _, _ := runtime.Caller(0)
	ch, err := loader.Load(filepath.Join(filepath.Dir(file), "..", "..", "charts", "kubernaut-executor"))
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "kx", "kubernaut-system"
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	if values == nil {
		values = map[string]any{}
	}
	rel, err := install.Run(ch, values)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(rel.Manifest, "\n---\n") {
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err != nil || d.Kind != "Deployment" {
			continue
		}
		return d.Spec.Template.Spec.Containers[0].Args
	}
	t.Fatal("the chart renders no Deployment")
	return nil
}

// parse parses args with the manager's flags and checks them as main does.
func parse(args []string) (*settings, error) {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return s, s.check()
}

// TestTheChartSetsTheManagersFlags parses the args the chart gives the manager with the
// manager's own flags: every arg is a flag the binary has, and each performance value reaches
// its flag, with its default and when set.
func TestTheChartSetsTheManagersFlags(t *testing.T) {
	tests := []struct {
		name                string
		values              map[string]any
		workers             int
		qps                 float64
		burst               int
		events              controllers.EventVolume
		jobTTL              time.Duration
		auditConcurrency    int
		auditURL, namespace string
	}{
		{name: "defaults", workers: 8, qps: 50, burst: 100, events: controllers.EventsAll, jobTTL: 24 * time.Hour, auditConcurrency: 4},
		{name: "tuned for load", values: map[string]any{
			"executor": map[string]any{"maxConcurrentReconciles": 32, "events": "warnings", "jobTTL": "2h"},
			"manager":  map[string]any{"kubeAPI": map[string]any{"qps": 200, "burst": 400}},
			"audit":    map[string]any{"url": "https://audit.example:8443", "concurrency": 16},
		}, workers: 32, qps: 200, burst: 400, events: controllers.EventsWarnings, jobTTL: 2 * time.Hour, auditConcurrency: 16, auditURL: "https://audit.example:8443"},
		{name: "no client-side limit", values: map[string]any{"manager": map[string]any{"kubeAPI": map[string]any{"qps": -1}}},
			workers: 8, qps: -1, burst: 100, events: controllers.EventsAll, jobTTL: 24 * time.Hour, auditConcurrency: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := chartArgs(t, tt.values)
			s, err := parse(args)
			if err != nil {
				t.Fatalf("the manager refuses the chart's args %v: %v", args, err)
			}
			if s.maxConcurrentReconciles != tt.workers || s.kubeAPIQPS != tt.qps || s.kubeAPIBurst != tt.burst || s.events != tt.events ||
				s.executor.JobTTL != tt.jobTTL || s.audit.Concurrency != tt.auditConcurrency || s.auditCfg.URL != tt.auditURL {
				t.Errorf("from %v: workers %d, qps %v, burst %d, events %q, job TTL %s, audit %q x%d",
					args, s.maxConcurrentReconciles, s.kubeAPIQPS, s.kubeAPIBurst, s.events, s.executor.JobTTL, s.auditCfg.URL, s.audit.Concurrency)
			}
			opts := s.managerOptions()
			if opts.MaxConcurrentReconciles != tt.workers || opts.KubeAPIQPS != float32(tt.qps) || opts.KubeAPIBurst != tt.burst ||
				opts.Events != tt.events || opts.Executor.JobTTL != tt.jobTTL || opts.Namespace != "kubernaut-system" {
				t.Errorf("manager options %+v", opts)
			}
		})
	}
}

func TestFlagsTheManagerRefuses(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	base := []string{"--namespace=ns"}
	tests := []struct{ arg, want string }{
		{"--events=info", `"info" is neither "all" nor "warnings"`},
		{"--max-concurrent-reconciles=0", "--max-concurrent-reconciles must be at least 1"},
		{"--kube-api-qps=0", "--kube-api-qps must not be 0"},
		{"--kube-api-burst=0", "--kube-api-burst must be at least 1"},
		{"--action-images=kubernaut-actions", "invalid --action-images"},
	}
	for _, tt := range tests {
		if _, err := parse(append(base, tt.arg)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.arg, err, tt.want)
		}
	}
	if _, err := parse(nil); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("no namespace: error %v", err)
	}
}

// TestTheChartSetsTheProtectedNamespaces checks that executor.protectedNamespaces reaches
// --protected-namespaces and the manager's options, by default and when set, and that an empty
// list is not read as the default.
func TestTheChartSetsTheProtectedNamespaces(t *testing.T) {
	for _, tt := range []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{name: "defaults", want: []string{"kube-system", "kube-public", "kube-node-lease"}},
		{name: "set", values: map[string]any{"executor": map[string]any{"protectedNamespaces": []any{"prod", "payments"}}}, want: []string{"prod", "payments"}},
		{name: "empty", values: map[string]any{"executor": map[string]any{"protectedNamespaces": []any{}}}, want: []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := chartArgs(t, tt.values)
			s, err := parse(args)
			if err != nil {
				t.Fatalf("the manager refuses the chart's args %v: %v", args, err)
			}
			if got := s.managerOptions().ProtectedNamespaces; got == nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("from %v: protected namespaces %#v, want %#v", args, got, tt.want)
			}
		})
	}
	if _, err := parse([]string{"--namespace=ns", "--protected-namespaces=kube-system,Kube_Public"}); err == nil ||
		!strings.Contains(err.Error(), `invalid --protected-namespaces: "Kube_Public" is not a namespace name`) {
		t.Errorf("a bad namespace name: error %v", err)
	}
}
