package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestParseParams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		pairs []string
		want  string // the parameters as the execution carries them
	}{
		{name: "none", want: `{}`},
		{name: "number", pairs: []string{"replicas=3"}, want: `{"replicas":3}`},
		{name: "big number stays exact", pairs: []string{"n=12345678901234567890"}, want: `{"n":12345678901234567890}`},
		{name: "boolean and null", pairs: []string{"force=true", "grace=null"}, want: `{"force":true,"grace":null}`},
		{name: "plain string", pairs: []string{"output=hello world"}, want: `{"output":"hello world"}`},
		{name: "quoted JSON string stays a string", pairs: []string{`replicas="3"`}, want: `{"replicas":"3"}`},
		{name: "empty value is the empty string", pairs: []string{"reason="}, want: `{"reason":""}`},
		{name: "text after a number is a string", pairs: []string{"note=3 apples"}, want: `{"note":"3 apples"}`},
		{name: "value with an equals sign", pairs: []string{"selector=app=web"}, want: `{"selector":"app=web"}`},
		{name: "object value", pairs: []string{`limits={"cpu":"1","n":2}`}, want: `{"limits":{"cpu":"1","n":2}}`},
		{name: "array value", pairs: []string{`names=["a","b"]`}, want: `{"names":["a","b"]}`},
		{name: "dotted key is one top-level key", pairs: []string{"a.b=1"}, want: `{"a.b":1}`},
		{name: "YAML file", file: "replicas: 2\nlabels: {app: web}\n", want: `{"labels":{"app":"web"},"replicas":2}`},
		{name: "JSON file", file: `{"replicas": 2}`, want: `{"replicas":2}`},
		{name: "file holding null", file: "null\n", want: `{}`},
		{name: "--param overrides the file", file: "replicas: 2\nkeep: true\n", pairs: []string{"replicas=5"}, want: `{"keep":true,"replicas":5}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params, err := parseParams([]byte(tc.file), tc.pairs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(params)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseParamsRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		pairs []string
		want  string
	}{
		{name: "no equals sign", pairs: []string{"replicas"}, want: `--param "replicas": expected key=value`},
		{name: "empty key", pairs: []string{"=3"}, want: `--param "=3": the key is empty`},
		{name: "key given twice", pairs: []string{"a=1", "a=2"}, want: `--param "a=2": a is given twice`},
		{name: "file not an object", file: "- a\n- b\n", want: "--params-file: not a YAML or JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseParams([]byte(tc.file), tc.pairs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.As(err, new(usageError)) {
				t.Errorf("%v is not a usage error", err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]targetArg{
		"Deployment/web":        {resource: "Deployment", name: "web"},
		"deployments.apps/web":  {resource: "deployments.apps", name: "web"},
		"node/worker-1.example": {resource: "node", name: "worker-1.example"},
	} {
		got, err := parseTarget(in)
		if err != nil || got != want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "web", "/web", "Deployment/", "Deployment/ns/web"} {
		if _, err := parseTarget(in); err == nil || !errors.As(err, new(usageError)) {
			t.Errorf("parseTarget(%q) = %v; want a usage error", in, err)
		}
	}
}

// testMapper knows what discovery would say of a few kinds.
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}, {Group: "apps", Version: "v1"}})
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	return m
}

func TestResolveKind(t *testing.T) {
	for in, want := range map[string]resolvedKind{
		"Deployment":          {kind: "Deployment", namespaced: true},
		"deployment":          {kind: "Deployment", namespaced: true},
		"deployments":         {kind: "Deployment", namespaced: true},
		"deployments.apps":    {kind: "Deployment", namespaced: true},
		"deployments.v1.apps": {kind: "Deployment", namespaced: true},
		"pods":                {kind: "Pod", namespaced: true},
		"Node":                {kind: "Node", namespaced: false},
		"nodes":               {kind: "Node", namespaced: false},
	} {
		got, err := resolveKind(testMapper(), in)
		if err != nil || got != want {
			t.Errorf("resolveKind(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	_, err := resolveKind(testMapper(), "Widget")
	if err == nil || err.Error() != `--target: the API server has no kind or resource "Widget"` {
		t.Errorf("resolveKind(Widget) = %v", err)
	}
	if !errors.As(err, new(usageError)) {
		t.Errorf("an unknown kind is not a usage error: %v", err)
	}
}
