package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// parseParams builds an action's parameters from a parameters file's content (YAML or JSON, an
// object; nil for none) and --param k=v pairs, which override the file's keys. A value that
// parses as JSON is taken as such, so replicas=3 is a number and force=true a boolean; anything
// else is a string. Keys are top-level: a.b=1 sets the key "a.b", not a nested object (use a JSON
// object value, or the file, to nest).
func parseParams(file []byte, pairs []string) (map[string]any, error) {
	params := map[string]any{}
	if len(bytes.TrimSpace(file)) > 0 {
		if err := yaml.Unmarshal(file, &params); err != nil {
			return nil, usageErrorf("--params-file: not a YAML or JSON object: %v", err)
		}
		if params == nil { // the file held only null
			params = map[string]any{}
		}
	}
	seen := map[string]bool{}
	for _, pair := range pairs {
		key, raw, ok := strings.Cut(pair, "=")
		switch {
		case !ok:
			return nil, usageErrorf("--param %q: expected key=value", pair)
		case key == "":
			return nil, usageErrorf("--param %q: the key is empty", pair)
		case seen[key]:
			return nil, usageErrorf("--param %q: %s is given twice", pair, key)
		}
		seen[key] = true
		params[key] = paramValue(raw)
	}
	return params, nil
}

// paramValue is raw decoded as JSON when it is JSON (a number, true, false, null, a quoted string,
// an array or an object), else raw itself.
func paramValue(raw string) any {
	if !json.Valid([]byte(raw)) {
		return raw
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber() // 12345678901234567890 stays exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	return v
}

// targetArg is --target as given: KIND/NAME, where KIND is what kubectl accepts for a resource
// (Deployment, deployments, deploy, deployments.apps).
type targetArg struct {
	resource, name string
}

// parseTarget splits --target into its kind and name.
func parseTarget(s string) (targetArg, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
		return targetArg{}, usageErrorf("--target %q: expected KIND/NAME, for example Deployment/web or node/worker-1", s)
	}
	return targetArg{resource: kind, name: name}, nil
}

// resolvedKind is a target kind as the API server knows it.
type resolvedKind struct {
	// kind is the Kind, as spec.action.target.resourceKind wants it (Deployment, Node).
	kind string
	// namespaced is false for cluster-scoped kinds such as Node, whose target has no namespace.
	namespaced bool
}

// resolveKind asks the API server's discovery, through mapper, which Kind resource names and
// whether it is namespaced: only the server knows a kind's scope, and a user may write the kind as
// kubectl accepts it (deploy, deployments, Deployment, deployments.apps).
func resolveKind(mapper meta.RESTMapper, resource string) (resolvedKind, error) {
	var gvk schema.GroupVersionKind
	full, partial := schema.ParseResourceArg(resource)
	if full != nil {
		gvk, _ = mapper.KindFor(*full)
	}
	if gvk.Empty() {
		var err error
		if gvk, err = mapper.KindFor(partial.WithVersion("")); err != nil {
			if meta.IsNoMatchError(err) {
				return resolvedKind{}, usageErrorf("--target: the API server has no kind or resource %q", resource)
			}
			return resolvedKind{}, fmt.Errorf("--target: looking up kind %q: %w", resource, err)
		}
	}
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return resolvedKind{}, fmt.Errorf("--target: looking up the scope of %s: %w", gvk.Kind, err)
	}
	return resolvedKind{kind: gvk.Kind, namespaced: mapping.Scope.Name() == meta.RESTScopeNameNamespace}, nil
}
