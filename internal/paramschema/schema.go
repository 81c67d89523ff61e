// Package paramschema validates an execution's parameters against its template's JSON Schema.
// Schemas are compiled once per template generation and cached; errors are reported as field
// errors under spec.action.parameters, one per violation.
package paramschema

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"

	"github.com/kubernaut/kubernaut-executor/internal/render"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxParametersBytes bounds the size of an execution's parameters.
const MaxParametersBytes = 32 * 1024

// Path is where parameters live in a KubernetesExecution.
var Path = field.NewPath("spec", "action", "parameters")

// Compile compiles a JSON Schema. An empty schema accepts any object. Only references within
// the schema resolve: the compiler reads neither the network nor files, whatever the schema
// says (CheckRefs tells a template's author why).
func Compile(raw []byte) (*gojsonschema.Schema, error) {
	if len(raw) == 0 {
		raw = []byte(`{"type":"object"}`)
	}
	// The default, but it matters: validating a schema against its $schema would load it.
	loader := gojsonschema.NewSchemaLoader()
	loader.Validate = false
	return loader.Compile(localLoader{gojsonschema.NewBytesLoader(raw)})
}

// localLoader loads the schema itself; its factory, which gojsonschema asks for every
// reference outside the schema, refuses them all.
type localLoader struct {
	gojsonschema.JSONLoader
}

// LoaderFactory returns the factory gojsonschema uses for references outside the schema.
func (localLoader) LoaderFactory() gojsonschema.JSONLoaderFactory { return refusingFactory{} }

// refusingFactory makes loaders that load nothing.
type refusingFactory struct{}

// New returns a loader for source that fails when asked to load it.
func (refusingFactory) New(source string) gojsonschema.JSONLoader {
	// The reference loader parses source as a reference; it is never asked to load it.
	return refusedLoader{JSONLoader: gojsonschema.NewReferenceLoader(source), source: source}
}

// refusedLoader is a reference that is never loaded.
type refusedLoader struct {
	gojsonschema.JSONLoader
	source string
}

// LoadJSON refuses to load the reference.
func (l refusedLoader) LoadJSON() (any, error) {
	return nil, fmt.Errorf("reference %q is not allowed: only local references (#/...) are", l.source)
}

// LoaderFactory returns the refusing factory again.
func (refusedLoader) LoaderFactory() gojsonschema.JSONLoaderFactory { return refusingFactory{} }

// CheckRefs returns an error at each $ref of the raw JSON Schema that is not local (does not
// start with #), and at each $id or id that is not a plain fragment: a schema may not make the
// compiler fetch anything, nor set a base URI that local references would resolve against.
// path is where the schema lives, for example spec.parameters. A schema that is not JSON gets
// no error here; Compile reports it.
func CheckRefs(raw []byte, path *field.Path) field.ErrorList {
	var doc any
	if len(raw) == 0 || json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var errs field.ErrorList
	checkRefs(doc, path, &errs)
	return errs
}

// checkRefs walks one schema (or a list of them) at path.
func checkRefs(node any, path *field.Path, errs *field.ErrorList) {
	switch n := node.(type) {
	case []any:
		for i, v := range n {
			checkRefs(v, path.Index(i), errs)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(n)) {
			v := n[k]
			switch k {
			case "$ref":
				if s, ok := v.(string); ok && !strings.HasPrefix(s, "#") {
					*errs = append(*errs, field.Forbidden(path.Child(k), "only local references (#/...) are allowed"))
				}
			case "$id", "id":
				if s, ok := v.(string); ok && !strings.HasPrefix(s, "#") {
					*errs = append(*errs, field.Forbidden(path.Child(k), "only a plain fragment (#name) is allowed"))
				}
			case "const", "enum", "default", "examples":
				// Values, not schemas.
			case "properties", "patternProperties", "dependencies", "definitions", "$defs":
				// Maps from names, which may be anything ($ref, id...), to schemas.
				if m, ok := v.(map[string]any); ok {
					for _, name := range slices.Sorted(maps.Keys(m)) {
						checkRefs(m[name], path.Child(k, name), errs)
					}
				}
			default:
				checkRefs(v, path.Child(k), errs)
			}
		}
	}
}

// Cache holds compiled schemas by template UID and generation.
type Cache struct {
	mu      sync.Mutex
	entries map[types.UID]entry
}

type entry struct {
	generation int64
	schema     *gojsonschema.Schema
	defaults   *render.Defaults
	err        error
}

// Get returns the compiled schema of a template generation, compiling it on first use.
func (c *Cache) Get(uid types.UID, generation int64, raw []byte) (*gojsonschema.Schema, error) {
	e := c.lookup(uid, generation, raw)
	return e.schema, e.err
}

// Defaults returns the defaults the schema of a template generation declares, extracted on
// first use, so that applying them does not parse the schema again for every execution.
func (c *Cache) Defaults(uid types.UID, generation int64, raw []byte) (*render.Defaults, error) {
	e := c.lookup(uid, generation, raw)
	if e.err != nil {
		return nil, e.err
	}
	return e.defaults, nil
}

func (c *Cache) lookup(uid types.UID, generation int64, raw []byte) entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[uid]; ok && e.generation == generation {
		return e
	}
	if c.entries == nil {
		c.entries = map[types.UID]entry{}
	}
	e := entry{generation: generation}
	if e.schema, e.err = Compile(raw); e.err == nil {
		e.defaults, e.err = render.CompileDefaults(raw)
	}
	c.entries[uid] = e
	return e
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
