package paramschema

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

const testSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["replicas"],
  "properties": {
    "replicas": {"type": "integer", "minimum": 0, "maximum": 100},
    "mode": {"type": "string", "enum": ["fast", "safe"]},
    "container": {"type": "string", "pattern": "^[a-z0-9-]+$", "maxLength": 10},
    "nested": {"type": "object", "properties": {"depth": {"type": "integer", "minimum": 1}}},
    "list": {"type": "array", "items": {"type": "integer", "minimum": 0}}
  }
}`

func TestValidate(t *testing.T) {
	schema, err := Compile([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		params string
		want   []string
	}{
		{"valid", `{"replicas":3,"mode":"safe","container":"web","nested":{"depth":2},"list":[1,2]}`, nil},
		{"minimum", `{"replicas":-1}`, []string{"spec.action.parameters.replicas: Invalid value: -1: must be greater than or equal to 0"}},
		{"maximum", `{"replicas":101}`, []string{"spec.action.parameters.replicas: Invalid value: 101: must be less than or equal to 100"}},
		{"type", `{"replicas":"three"}`, []string{`spec.action.parameters.replicas: Invalid value: "three": must be of type integer`}},
		{"required", `{}`, []string{"spec.action.parameters.replicas: Required value"}},
		{"enum", `{"replicas":1,"mode":"reckless"}`, []string{`spec.action.parameters.mode: Unsupported value: "reckless": supported values: "fast", "safe"`}},
		{"pattern", `{"replicas":1,"container":"Web_1"}`, []string{`spec.action.parameters.container: Invalid value: "Web_1": must match the pattern ^[a-z0-9-]+$`}},
		{"additional property", `{"replicas":1,"replica":2}`, []string{"spec.action.parameters.replica: Forbidden: the action has no such parameter"}},
		{"nested", `{"replicas":1,"nested":{"depth":0}}`, []string{"spec.action.parameters.nested.depth: Invalid value: 0: must be greater than or equal to 1"}},
		{"array item", `{"replicas":1,"list":[1,-5]}`, []string{"spec.action.parameters.list[1]: Invalid value: -5: must be greater than or equal to 0"}},
		{"several at once", `{"replicas":-1,"mode":"x","extra":true}`, []string{
			"spec.action.parameters.replicas: Invalid value: -1",
			`spec.action.parameters.mode: Unsupported value: "x"`,
			"spec.action.parameters.extra: Forbidden",
		}},
		{"not an object", `[1,2]`, []string{"spec.action.parameters: Invalid value: \"[1,2]\": must be a JSON object"}},
		{"too large", `{"replicas":1,"pad":"` + strings.Repeat("x", MaxParametersBytes) + `"}`, []string{"spec.action.parameters: Too long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(schema, []byte(tt.params))
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.want), errs)
			}
			for _, want := range tt.want {
				found := false
				for _, e := range errs {
					if strings.HasPrefix(e.Error(), want) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error starts with %q in %v", want, errs)
				}
			}
		})
	}
}

func TestCacheCompilesOncePerGeneration(t *testing.T) {
	var c Cache
	a, _ := c.Get("uid", 1, []byte(testSchema))
	b, _ := c.Get("uid", 1, []byte(`{"type":"string"}`))
	if a != b {
		t.Fatal("the same generation was compiled twice")
	}
	d, _ := c.Get("uid", 2, []byte(`{"type":"object"}`))
	if d == a {
		t.Fatal("a new generation reused the old schema")
	}
	if _, err := c.Get("bad", 1, []byte(`{"type":"nonsense"}`)); err == nil {
		t.Fatal("an invalid schema compiled")
	}
}

func FuzzValidate(f *testing.F) {
	schema, err := Compile([]byte(testSchema))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{"replicas":3}`, `{"replicas":-1,"mode":"x"}`, `[]`, `null`, `{"list":[1,"a",{}]}`, `{"nested":{"depth":"deep"}}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, e := range Validate(schema, raw) {
			if !strings.HasPrefix(e.Field, "spec.action.parameters") {
				t.Fatalf("error outside the parameters: %v", e)
			}
		}
	})
}

func TestCheckRefs(t *testing.T) {
	path := field.NewPath("spec", "parameters")
	tests := []struct {
		name   string
		schema string
		want   []string
	}{
		{"no references", testSchema, nil},
		{"empty", ``, nil},
		{"local references", `{"definitions":{"n":{"type":"integer"}},"properties":{"x":{"$ref":"#/definitions/n"},"y":{"$ref":"#"}},"$id":"#root"}`, nil},
		{"remote reference", `{"properties":{"x":{"$ref":"http://example.com/s.json"}}}`,
			[]string{"spec.parameters.properties.x.$ref: Forbidden: only local references (#/...) are allowed"}},
		{"https, file and relative references", `{"items":[{"$ref":"https://example.com/s.json#/a"},{"$ref":"file:///etc/passwd"}],"not":{"$ref":"other.json"}}`, []string{
			"spec.parameters.items[0].$ref: Forbidden: only local references (#/...) are allowed",
			"spec.parameters.items[1].$ref: Forbidden: only local references (#/...) are allowed",
			"spec.parameters.not.$ref: Forbidden: only local references (#/...) are allowed",
		}},
		{"base URIs", `{"$id":"http://example.com/root.json","definitions":{"a":{"id":"file:///tmp/"}}}`, []string{
			"spec.parameters.$id: Forbidden: only a plain fragment (#name) is allowed",
			"spec.parameters.definitions.a.id: Forbidden: only a plain fragment (#name) is allowed",
		}},
		{"property names are not keywords", `{"properties":{"$ref":{"type":"string"},"id":{"type":"string","default":{"$ref":"http://x"}}},"enum":[{"$ref":"http://x"}]}`, nil},
		{"deep in combinators", `{"allOf":[{"anyOf":[{"properties":{"a":{"items":{"$ref":"//host/x"}}}}]}]}`,
			[]string{"spec.parameters.allOf[0].anyOf[0].properties.a.items.$ref: Forbidden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := CheckRefs([]byte(tt.schema), path)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.want), errs)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(errs[i].Error(), want) {
					t.Errorf("error %d = %q, want one starting with %q", i, errs[i].Error(), want)
				}
			}
		})
	}
}

func TestCompileLoadsNothing(t *testing.T) {
	var requests atomic.Int32
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte(`{"type":"string"}`))
	}))
	defer server.Close()
	secret := filepath.Join(t.TempDir(), "secret.json")
	if err := os.WriteFile(secret, []byte(`{"type":"string","description":"top secret"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for name, ref := range map[string]string{
		"http":           server.URL + "/schema.json",
		"http, fragment": server.URL + "/schema.json#/definitions/a",
		"file":           "file://" + filepath.ToSlash(secret),
		"metaschema":     "http://json-schema.org/draft-07/schema#",
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Compile([]byte(`{"type":"object","properties":{"x":{"$ref":"` + ref + `"}}}`))
			if err == nil {
				t.Fatalf("compiled with %s", ref)
			}
			if !strings.Contains(err.Error(), "only local references") || strings.Contains(err.Error(), "top secret") {
				t.Fatalf("error %v", err)
			}
			if s != nil {
				t.Fatal("a schema came back with the error")
			}
		})
	}
	// A base URI makes no reference remote either.
	if _, err := Compile([]byte(`{"$id":"` + server.URL + `/root.json","properties":{"x":{"$ref":"other.json"}}}`)); err == nil {
		t.Fatal("compiled a reference relative to a remote base")
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the server got %d requests", n)
	}
}

func TestCompileLocalRefs(t *testing.T) {
	schema, err := Compile([]byte(`{"type":"object","definitions":{"count":{"type":"integer","minimum":0}},
		"properties":{"replicas":{"$ref":"#/definitions/count"},"self":{"$ref":"#"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if errs := Validate(schema, []byte(`{"replicas":2,"self":{"replicas":1}}`)); len(errs) != 0 {
		t.Fatal(errs)
	}
	if errs := Validate(schema, []byte(`{"replicas":-1}`)); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "spec.action.parameters.replicas: Invalid value: -1") {
		t.Fatalf("errors %v", errs)
	}
	if errs := Validate(schema, []byte(`{"self":{"replicas":"x"}}`)); len(errs) != 1 {
		t.Fatalf("errors %v", errs)
	}
}
