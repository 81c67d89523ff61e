// Package paramschema validates an execution's parameters against its template's JSON Schema.
// Schemas are compiled once per template generation and cached; errors are reported as field
// errors under spec.action.parameters, one per violation.
package paramschema

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxParametersBytes bounds the size of an execution's parameters.
const MaxParametersBytes = 32 * 1024

// Path is where parameters live in a KubernetesExecution.
var Path = field.NewPath("spec", "action", "parameters")

// Compile compiles a JSON Schema. An empty schema accepts any object.
func Compile(raw []byte) (*gojsonschema.Schema, error) {
	if len(raw) == 0 {
		raw = []byte(`{"type":"object"}`)
	}
	return gojsonschema.NewSchema(gojsonschema.NewBytesLoader(raw))
}

// Cache holds compiled schemas by template UID and generation.
type Cache struct {
	mu      sync.Mutex
	entries map[types.UID]entry
}

type entry struct {
	generation int64
	schema     *gojsonschema.Schema
	err        error
}

// Get returns the compiled schema of a template generation, compiling it on first use.
func (c *Cache) Get(uid types.UID, generation int64, raw []byte) (*gojsonschema.Schema, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[uid]; ok && e.generation == generation {
		return e.schema, e.err
	}
	if c.entries == nil {
		c.entries = map[types.UID]entry{}
	}
	s, err := Compile(raw)
	c.entries[uid] = entry{generation: generation, schema: s, err: err}
	return s, err
}

// Validate checks raw parameters (a JSON object, or empty) against schema and returns every
// violation with its path.
func Validate(schema *gojsonschema.Schema, raw []byte) field.ErrorList {
	if len(raw) > MaxParametersBytes {
		return field.ErrorList{field.TooLong(Path, "", MaxParametersBytes)}
	}
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return field.ErrorList{field.Invalid(Path, "", "must be a JSON object: "+err.Error())}
	}
	if _, ok := doc.(map[string]any); !ok {
		return field.ErrorList{field.Invalid(Path, string(raw), "must be a JSON object")}
	}
	res, err := schema.Validate(gojsonschema.NewGoLoader(doc))
	if err != nil {
		return field.ErrorList{field.InternalError(Path, err)}
	}
	var errs field.ErrorList
	for _, e := range res.Errors() {
		errs = append(errs, toFieldError(e))
	}
	return errs
}

// toFieldError maps one JSON Schema violation to a field error at the parameter's path, with a
// message in the API server's own words where there is one.
func toFieldError(e gojsonschema.ResultError) *field.Error {
	path := pathOf(e.Field())
	d := e.Details()
	switch e.Type() {
	case "required":
		return field.Required(path.Child(fmt.Sprint(d["property"])), "")
	case "additional_property_not_allowed":
		return field.Forbidden(path.Child(fmt.Sprint(d["property"])), "the action has no such parameter")
	case "invalid_type":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be of type %v", d["expected"]))
	case "number_gte":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be greater than or equal to %v", d["min"]))
	case "number_gt":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be greater than %v", d["min"]))
	case "number_lte":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be less than or equal to %v", d["max"]))
	case "number_lt":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be less than %v", d["max"]))
	case "enum":
		return field.NotSupported(path, e.Value(), enumValues(fmt.Sprint(d["allowed"])))
	case "pattern":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must match the pattern %v", d["pattern"]))
	case "string_gte":
		return field.Invalid(path, e.Value(), fmt.Sprintf("must be at least %v characters long", d["min"]))
	case "string_lte":
		return field.TooLong(path, e.Value(), toInt(d["max"]))
	}
	desc := e.Description()
	if desc != "" {
		desc = strings.ToLower(desc[:1]) + desc[1:]
	}
	return field.Invalid(path, e.Value(), desc)
}

// pathOf turns gojsonschema's dotted field ("(root)", "a.b", "items.0") into a field path.
func pathOf(f string) *field.Path {
	p := Path
	if f == "(root)" || f == "" {
		return p
	}
	for _, part := range strings.Split(strings.TrimPrefix(f, "(root)."), ".") {
		if i, err := strconv.Atoi(part); err == nil {
			p = p.Index(i)
		} else {
			p = p.Child(part)
		}
	}
	return p
}

// enumValues splits gojsonschema's `"a", "b"` rendering of allowed values.
func enumValues(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ", ") {
		out = append(out, strings.Trim(v, `"`))
	}
	return out
}

func toInt(v any) int {
	n, _ := strconv.Atoi(fmt.Sprint(v))
	return n
}
