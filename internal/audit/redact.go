package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Schema keywords that mark a parameter as sensitive when set to true.
const (
	// SensitiveKeyword is the executor's own mark for a sensitive parameter.
	SensitiveKeyword = "x-kubernaut-sensitive"
	// WriteOnlyKeyword is JSON Schema's mark for a value that is sent but never read back.
	WriteOnlyKeyword = "writeOnly"
)

// minScrubLength is the shortest sensitive value that is also removed from free text (the
// action's output and error): shorter ones would cut unrelated words apart.
const minScrubLength = 4

// maxValueDepth bounds how deep Redact walks parameters; anything deeper is redacted.
const maxValueDepth = 64

// Redact returns the parameters (a JSON object, or empty for none) with the value of every
// sensitive parameter replaced by Redacted, and the sensitive values it removed (every string
// and number inside them). A parameter is sensitive when a schema that applies to it sets
// x-kubernaut-sensitive or writeOnly to true; nested objects and arrays are followed through
// properties, patternProperties, additionalProperties, items, prefixItems and additionalItems,
// local $ref, and the allOf, anyOf, oneOf, if, then, else and dependentSchemas branches (any
// branch that marks a value counts, whether or not it would validate).
//
// Redact fails closed: when all is true (the schema is not the one admission checked), when
// the schema is not valid JSON, every top-level value is redacted; a value whose schema holds
// a reference that does not resolve or a pattern that does not compile, or that nests deeper
// than the walk goes, is redacted too. An empty schema marks nothing.
func Redact(params, schema []byte, all bool) (json.RawMessage, []string, error) {
	if len(bytes.TrimSpace(params)) == 0 {
		return json.RawMessage(`{}`), nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, nil, fmt.Errorf("reading parameters: %w", err)
	}
	if obj == nil {
		obj = map[string]any{}
	}
	r := &redactor{}
	switch {
	case all:
		r.hideAll(obj)
	case len(bytes.TrimSpace(schema)) == 0:
	default:
		if err := json.Unmarshal(schema, &r.root); err != nil {
			r.hideAll(obj)
			break
		}
		if _, kept := r.value(obj, []any{r.root}, 0).(map[string]any); !kept {
			r.hideAll(obj) // the schema marks the whole object
		}
	}
	out, err := marshal(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("writing parameters: %w", err)
	}
	slices.Sort(r.secrets)
	return out, slices.Compact(r.secrets), nil
}

// redactor walks parameters along their schema.
type redactor struct {
	// root is the whole schema, which local references resolve against.
	root any
	// secrets are the values redacted so far.
	secrets []string
}

// hideAll redacts every value of obj.
func (r *redactor) hideAll(obj map[string]any) {
	for k, v := range obj {
		obj[k] = r.hide(v)
	}
}

// hide records the strings and numbers in v as secrets and returns Redacted.
func (r *redactor) hide(v any) any {
	switch val := v.(type) {
	case string:
		r.secrets = append(r.secrets, val)
	case json.Number:
		r.secrets = append(r.secrets, val.String())
	case map[string]any:
		for _, child := range val {
			r.hide(child)
		}
	case []any:
		for _, child := range val {
			r.hide(child)
		}
	}
	return Redacted
}

// value returns v with its sensitive parts redacted; schemas are the (unexpanded) schemas that
// describe it. Objects and arrays are redacted in place.
func (r *redactor) value(v any, schemas []any, depth int) any {
	if len(schemas) == 0 {
		return v
	}
	var applied []map[string]any
	seen := map[uintptr]bool{}
	for _, s := range schemas {
		if !r.expand(s, seen, &applied) {
			return r.hide(v)
		}
	}
	if depth > maxValueDepth || slices.ContainsFunc(applied, marksSensitive) {
		return r.hide(v)
	}
	switch val := v.(type) {
	case map[string]any:
		for k, child := range val {
			sub, ok := propertySchemas(applied, k)
			if !ok {
				val[k] = r.hide(child)
				continue
			}
			val[k] = r.value(child, sub, depth+1)
		}
	case []any:
		for i, child := range val {
			val[i] = r.value(child, itemSchemas(applied, i), depth+1)
		}
	}
	return v
}

// expand appends to out the schema objects that apply to a value s describes: s itself, what
// its local $ref points to, and its branches. Each schema object is added once. It reports
// false when a reference does not resolve.
func (r *redactor) expand(s any, seen map[uintptr]bool, out *[]map[string]any) bool {
	m, ok := s.(map[string]any)
	if !ok {
		return true // a boolean schema marks nothing
	}
	id := reflect.ValueOf(m).Pointer()
	if seen[id] {
		return true
	}
	seen[id] = true
	*out = append(*out, m)
	var branches []any
	if ref, ok := m["$ref"].(string); ok {
		target, ok := r.resolve(ref)
		if !ok {
			return false
		}
		branches = append(branches, target)
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := m[k].([]any); ok {
			branches = append(branches, list...)
		}
	}
	for _, k := range []string{"if", "then", "else"} {
		if b, ok := m[k]; ok {
			branches = append(branches, b)
		}
	}
	for _, k := range []string{"dependentSchemas", "dependencies"} {
		if deps, ok := m[k].(map[string]any); ok {
			for _, name := range sortedKeys(deps) {
				branches = append(branches, deps[name]) // lists of names are not schemas and mark nothing
			}
		}
	}
	for _, b := range branches {
		if !r.expand(b, seen, out) {
			return false
		}
	}
	return true
}

// resolve returns the part of the schema a local reference points to: a JSON pointer
// (#/definitions/x) or a plain-name fragment (#x) matching an $id or $anchor.
func (r *redactor) resolve(ref string) (any, bool) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	frag, err := url.PathUnescape(frag)
	if err != nil {
		return nil, false
	}
	if frag == "" {
		return r.root, true
	}
	if !strings.HasPrefix(frag, "/") {
		return findAnchor(r.root, frag)
	}
	node := r.root
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			if node, ok = n[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// findAnchor returns the subschema of node whose $id is #name or whose $anchor is name.
func findAnchor(node any, name string) (any, bool) {
	switch n := node.(type) {
	case map[string]any:
		if n["$id"] == "#"+name || n["$anchor"] == name {
			return n, true
		}
		for _, k := range sortedKeys(n) {
			if found, ok := findAnchor(n[k], name); ok {
				return found, true
			}
		}
	case []any:
		for _, child := range n {
			if found, ok := findAnchor(child, name); ok {
				return found, true
			}
		}
	}
	return nil, false
}

// marksSensitive reports whether schema s marks its value as sensitive.
func marksSensitive(s map[string]any) bool {
	return s[SensitiveKeyword] == true || s[WriteOnlyKeyword] == true
}

// propertySchemas returns the schemas that describe the property name of an object described
// by schemas. It reports false when a pattern does not compile.
func propertySchemas(schemas []map[string]any, name string) ([]any, bool) {
	var out []any
	for _, s := range schemas {
		matched := false
		if props, ok := s["properties"].(map[string]any); ok {
			if p, ok := props[name]; ok {
				out = append(out, p)
				matched = true
			}
		}
		if pats, ok := s["patternProperties"].(map[string]any); ok {
			for _, pat := range sortedKeys(pats) {
				re, err := regexp.Compile(pat)
				if err != nil {
					return nil, false
				}
				if re.MatchString(name) {
					out = append(out, pats[pat])
					matched = true
				}
			}
		}
		if !matched {
			for _, k := range []string{"additionalProperties", "unevaluatedProperties"} {
				if p, ok := s[k]; ok {
					out = append(out, p)
				}
			}
		}
	}
	return out, true
}

// itemSchemas returns the schemas that describe item i of an array described by schemas.
func itemSchemas(schemas []map[string]any, i int) []any {
	var out []any
	for _, s := range schemas {
		prefix, hasPrefix := s["prefixItems"].([]any)
		switch items := s["items"].(type) {
		case []any: // draft 7 tuple
			if i < len(items) {
				out = append(out, items[i])
			} else if extra, ok := s["additionalItems"]; ok {
				out = append(out, extra)
			}
		case nil:
		default:
			if !hasPrefix || i >= len(prefix) {
				out = append(out, items)
			}
		}
		if hasPrefix && i < len(prefix) {
			out = append(out, prefix[i])
		}
		for _, k := range []string{"contains", "unevaluatedItems"} {
			if c, ok := s[k]; ok {
				out = append(out, c)
			}
		}
	}
	return out
}

// scrub replaces every occurrence of a secret of at least minScrubLength bytes in s by
// Redacted, longest secrets first so that one containing another is removed whole.
func scrub(s string, secrets []string) string {
	if s == "" || len(secrets) == 0 {
		return s
	}
	sorted := slices.Clone(secrets)
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range sorted {
		if len(secret) >= minScrubLength {
			s = strings.ReplaceAll(s, secret, Redacted)
		}
	}
	return s
}

// sortedKeys returns the keys of m in order, so walks are deterministic.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// marshal encodes v as compact JSON without escaping <, > and &, so Redacted reads as itself.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
