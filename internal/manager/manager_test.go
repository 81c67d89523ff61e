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
