package render

import (
	"reflect"
	"strings"
	"testing"
)

func TestStrings(t *testing.T) {
	data := &Data{
		Parameters: map[string]any{"replicas": float64(3), "name": "web; rm -rf /"},
		Target:     Target{Namespace: "prod", Kind: "Deployment", Name: "web"},
		Execution:  Execution{Name: "fix-1", Namespace: "ops", Attempt: 2},
		DryRun:     true,
	}
	tests := []struct {
		name    string
		items   []string
		want    []string
		wantErr string
	}{
		{name: "literal", items: []string{"scale"}, want: []string{"scale"}},
		{name: "parameters and target", items: []string{"--replicas={{ .Parameters.replicas }}", "{{ .Target.Namespace }}/{{ .Target.Name }}"},
			want: []string{"--replicas=3", "prod/web"}},
		// A shell metacharacter stays inside its one argv entry.
		{name: "no shell", items: []string{"{{ .Parameters.name }}"}, want: []string{"web; rm -rf /"}},
		{name: "sprig", items: []string{"{{ .Target.Kind | lower }}", "{{ .DryRun | toString }}", "{{ .Execution.Attempt }}"},
			want: []string{"deployment", "true", "2"}},
		{name: "missing key", items: []string{"{{ .Parameters.nope }}"}, wantErr: "map has no entry for key \"nope\""},
		{name: "env is not available", items: []string{`{{ env "HOME" }}`}, wantErr: `function "env" not defined`},
		{name: "randomness is not available", items: []string{`{{ randAlphaNum 5 }}`}, wantErr: `function "randAlphaNum" not defined`},
		{name: "parse error names the item", items: []string{"ok", "{{ .Target"}, wantErr: "args[1]"},
		{name: "nil stays nil", items: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Strings("args", tt.items, data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParameters(t *testing.T) {
	schema := []byte(`{"type":"object","properties":{
		"replicas":{"type":"integer","default":1},
		"mode":{"type":"string","default":"fast"},
		"nested":{"type":"object","properties":{"depth":{"type":"integer","default":2}}}}}`)
	tests := []struct {
		name    string
		raw     string
		schema  []byte
		want    map[string]any
		wantErr string
	}{
		{name: "defaults fill missing", raw: `{"replicas":5}`, schema: schema,
			want: map[string]any{"replicas": float64(5), "mode": "fast"}},
		{name: "nested defaults", raw: `{"nested":{}}`, schema: schema,
			want: map[string]any{"replicas": float64(1), "mode": "fast", "nested": map[string]any{"depth": float64(2)}}},
		{name: "empty raw", raw: ``, schema: schema, want: map[string]any{"replicas": float64(1), "mode": "fast"}},
		{name: "null raw", raw: `null`, schema: nil, want: map[string]any{}},
		{name: "no schema", raw: `{"a":"b"}`, want: map[string]any{"a": "b"}},
		{name: "not an object", raw: `[1]`, wantErr: "parameters must be a JSON object"},
		{name: "bad schema", raw: `{}`, schema: []byte(`[`), wantErr: "parameter schema must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parameters([]byte(tt.raw), tt.schema)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// FuzzRender renders arbitrary template text with arbitrary parameters: errors are fine,
// panics and calls outside the hermetic function map are not.
func FuzzRender(f *testing.F) {
	for _, seed := range []struct{ text, params string }{
		{"--replicas={{ .Parameters.replicas }}", `{"replicas":3}`},
		{"{{ .Target.Name | upper | trunc 3 }}", `{}`},
		{`{{ env "HOME" }}`, `{}`},
		{"{{ range .Parameters.list }}{{ . }},{{ end }}", `{"list":[1,"a",null]}`},
		{"{{ .Parameters.a.b.c }}", `{"a":{"b":{"c":true}}}`},
		{"{{ template \"x\" }}", `{}`},
		{"{{ toJson .Parameters }}", `{"k":[{"n":1.5}]}`},
	} {
		f.Add(seed.text, seed.params)
	}
	f.Fuzz(func(t *testing.T, text, params string) {
		p, err := Parameters([]byte(params), nil)
		if err != nil {
			return
		}
		_, _ = String("fuzz", text, &Data{Parameters: p, Target: Target{Namespace: "ns", Kind: "Pod", Name: "p"}})
	})
}
