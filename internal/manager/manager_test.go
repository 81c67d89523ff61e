package manager

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

func TestNewNeedsTheNamespace(t *testing.T) {
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("error %v, want one about the namespace", err)
	}
}

func TestEmptyAddressesServeNothing(t *testing.T) {
	for in, want := range map[string]string{"": "0", "0": "0", ":8080": ":8080"} {
		if got := disabledWhenEmpty(in); got != want {
			t.Errorf("disabledWhenEmpty(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSchemeHoldsTheProjectsTypes(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"KubernetesExecution", "ActionTemplate", "Job", "ConfigMap", "ClusterRole"} {
		found := false
		for gvk := range s.AllKnownTypes() {
			found = found || gvk.Kind == kind
		}
		if !found {
			t.Errorf("the scheme lacks %s", kind)
		}
	}
}

func TestRateLimit(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1", QPS: -1}
	for _, tt := range []struct {
		qps         float32
		burst       int
		wantQPS     float32
		wantBurst   int
		description string
	}{
		{0, 0, DefaultKubeAPIQPS, DefaultKubeAPIBurst, "the defaults, whatever cfg says"},
		{200, 400, 200, 400, "as given"},
		{-1, 0, -1, DefaultKubeAPIBurst, "no limit"},
	} {
		got := withRateLimit(cfg, tt.qps, tt.burst)
		if got.QPS != tt.wantQPS || got.Burst != tt.wantBurst || got.Host != cfg.Host {
			t.Errorf("%s: QPS %v, burst %d, host %q", tt.description, got.QPS, got.Burst, got.Host)
		}
	}
	if cfg.QPS != -1 || cfg.Burst != 0 {
		t.Errorf("the caller's config was changed: QPS %v, burst %d", cfg.QPS, cfg.Burst)
	}
}

func TestProtectedNamespaces(t *testing.T) {
	for _, tt := range []struct {
		listed      []string
		want        string
		description string
	}{
		{nil, "kube-system,kube-public,kube-node-lease,kubernaut-system", "the defaults and the manager's own"},
		{[]string{}, "kubernaut-system", "an empty list still protects the manager's own"},
		{[]string{"prod", "kubernaut-system", "prod"}, "prod,kubernaut-system", "as given, once each"},
	} {
		if got := strings.Join(protectedNamespaces(tt.listed, "kubernaut-system"), ","); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.description, got, tt.want)
		}
	}
}
