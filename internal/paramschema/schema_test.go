package paramschema

import (
	"strings"
	"testing"
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
