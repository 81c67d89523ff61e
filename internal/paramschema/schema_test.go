package paramschema

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xeipuuv/gojsonschema"
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

// FuzzValidate validates arbitrary bytes as parameters, against the test schema and against the
// schema a template without one gets. Every error is a field error at spec.action.parameters or
// below it; the permissive schema accepts exactly the JSON objects (and no parameters at all);
// and what the test schema accepts has what the schema requires.
func FuzzValidate(f *testing.F) {
	schema, err := Compile([]byte(testSchema))
	if err != nil {
		f.Fatal(err)
	}
	permissive, err := Compile(nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{"replicas":3}`, `{"replicas":-1,"mode":"x"}`, `[]`, `null`, `{"list":[1,"a",{}]}`, `{"nested":{"depth":"deep"}}`, ``,
		`{"replicas":3.0,"mode":"safe"}`, `{"replicas":100,"a.b":1}`, `{"replicas":1e400}`, ` {"x":{"y":[{}]}} `, `"str"`, `{"replicas":2}{}`} {
		f.Add([]byte(seed))
	}
	root := Path.String()
	f.Fuzz(func(t *testing.T, raw []byte) {
		var doc any
		obj, isObject := map[string]any(nil), false
		if len(raw) == 0 {
			obj, isObject = map[string]any{}, true
		} else if len(raw) <= MaxParametersBytes && json.Unmarshal(raw, &doc) == nil {
			obj, isObject = doc.(map[string]any)
		}
		for _, s := range []*gojsonschema.Schema{schema, permissive} {
			errs := Validate(s, raw)
			for _, e := range errs {
				if e == nil || (e.Field != root && !strings.HasPrefix(e.Field, root+".") && !strings.HasPrefix(e.Field, root+"[")) {
					t.Fatalf("error outside the parameters: %v", e)
				}
				if e.Type == "" || e.Type == field.ErrorTypeInternal || !strings.HasPrefix(e.Error(), e.Field+": ") {
					t.Fatalf("error %#v is not a field error on the parameters", e)
				}
			}
			if !isObject && (len(errs) != 1 || errs[0].Field != root) {
				t.Fatalf("parameters that are not a JSON object of at most %d bytes: %v, want one error at %s", MaxParametersBytes, errs, root)
			}
		}
		if errs := Validate(permissive, raw); isObject && len(errs) > 0 {
			t.Fatalf("a template without a schema refused the object %s: %v", raw, errs)
		}
		if errs := Validate(schema, raw); len(errs) == 0 {
			if msg := violation(obj); !isObject || msg != "" {
				t.Fatalf("the test schema accepted %s, which %s", raw, msg)
			}
		}
	})
}

// violation says what of the test schema obj breaks that Validate must catch: a missing or
// out-of-range integer replicas, a property the schema does not have, a mode outside its enum;
// "" when it breaks none of those.
func violation(obj map[string]any) string {
	for k := range obj {
		switch k {
		case "replicas", "mode", "container", "nested", "list":
		default:
			return fmt.Sprintf("has the unknown property %q", k)
		}
	}
	r, ok := obj["replicas"].(float64)
	if !ok || r != math.Trunc(r) || r < 0 || r > 100 {
		return fmt.Sprintf("has replicas %v", obj["replicas"])
	}
	if m, ok := obj["mode"]; ok && m != "fast" && m != "safe" {
		return fmt.Sprintf("has mode %v", m)
	}
	return ""
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
