// Package render turns an ActionTemplate's templated command, args and env into the literal
// argv and environment of one execution's container.
//
// Templates are Go text/templates with sprig's hermetic function map only: no access to the
// manager's environment, no randomness, no clock, so the same execution always renders the
// same Job. Each rendered item is one argv entry; nothing is ever passed to a shell.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// Data is what a template sees.
type Data struct {
	// Parameters are the execution's parameters with the schema's defaults applied.
	Parameters map[string]any
	// Target is the object the action acts on.
	Target Target
	// Execution names the KubernetesExecution.
	Execution Execution
	// DryRun is true when the action must change nothing.
	DryRun bool
}

// Target is the object the action acts on.
type Target struct {
	Namespace string
	Kind      string
	Name      string
}

// Execution names the execution being rendered.
type Execution struct {
	Name      string
	Namespace string
	Attempt   int32
}

// funcs is sprig's hermetic map, built once. Hermetic excludes env, expandenv, random and
// time-dependent functions.
var funcs = sprig.HermeticTxtFuncMap()

// Parse parses one templated string. The name is used in error messages.
func Parse(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
}

// String renders one templated string with data.
func String(name, text string, data *Data) (string, error) {
	t, err := Parse(name, text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// Strings renders each item of a list; errors name the item's index under name.
func Strings(name string, items []string, data *Data) ([]string, error) {
	if items == nil {
		return nil, nil
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, err := String(fmt.Sprintf("%s[%d]", name, i), item, data)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Parameters decodes an execution's raw parameters (a JSON object, or empty) and applies the
// defaults of the JSON Schema schema (also raw, may be empty).
func Parameters(raw, schema []byte) (map[string]any, error) {
	params := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &params); err != nil {
			return nil, fmt.Errorf("parameters must be a JSON object: %w", err)
		}
		if params == nil {
			params = map[string]any{}
		}
	}
	if len(bytes.TrimSpace(schema)) == 0 {
		return params, nil
	}
	var s map[string]any
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("parameter schema must be a JSON object: %w", err)
	}
	applyDefaults(params, s)
	return params, nil
}

// applyDefaults fills the properties missing from obj with their schema defaults, and recurses
// into nested objects that the schema describes.
func applyDefaults(obj map[string]any, schema map[string]any) {
	props, _ := schema["properties"].(map[string]any)
	for name, p := range props {
		prop, ok := p.(map[string]any)
		if !ok {
			continue
		}
		v, present := obj[name]
		if !present {
			if d, ok := prop["default"]; ok {
				obj[name] = d
			}
			continue
		}
		if nested, ok := v.(map[string]any); ok {
			applyDefaults(nested, prop)
		}
	}
}
