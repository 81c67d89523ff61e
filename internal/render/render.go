// Package render turns an ActionTemplate's templated command, args and env into the literal
// argv and environment of one execution's container.
//
// Templates are Go text/templates restricted to an explicit list of functions (see allowed):
// no access to the manager's environment, no randomness, no clock, so the same execution always
// renders the same Job. Each rendered item is one argv entry; nothing is ever passed to a shell.
//
// Rendering is bounded, because templates come from whoever may create an ActionTemplate and
// run inside the manager and its admission webhook: no function can build a value larger than
// MaxValueBytes or nested deeper than MaxValueDepth, every range iterates at most MaxRangeIterations times and nests at most
// MaxRangeDepth deep, one execution's output is at most MaxOutputBytes, and its rendering stops
// with an error after MaxRenderTime.
package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"text/template"
	"text/template/parse"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Limits of one execution's rendering: its command, args and env together.
const (
	// MaxOutputBytes bounds the rendered command, args and env values together.
	MaxOutputBytes = 64 << 10
	// MaxValueBytes bounds every value a function returns: a string's bytes, or a list's or
	// map's elements' sizes plus one per element.
	MaxValueBytes = 64 << 10
	// MaxValueDepth bounds how deep the lists and maps a function returns nest.
	MaxValueDepth = 100
	// MaxRangeIterations bounds the iterations of each range.
	MaxRangeIterations = 1000
	// MaxRangeDepth bounds how deep ranges nest.
	MaxRangeDepth = 2
	// MaxRenderTime bounds the time one execution's rendering takes.
	MaxRenderTime = time.Second
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

// Rendered is a container's command, args and env after rendering. Command and Args are nil
// when the template sets none; Env has one entry per templated variable, in order.
type Rendered struct {
	// Command is the container's command.
	Command []string
	// Args are the container's arguments.
	Args []string
	// Env are the template's variables with their rendered values.
	Env []corev1.EnvVar
}

// specPath is where command, args and env live in an ActionTemplate.
var specPath = field.NewPath("spec")

// Container renders one execution's command, args and env with data, under one budget shared
// by all of them. Errors are field errors at the item's path in the template's spec
// (spec.command[0], spec.args[1], spec.env[2].value). A template error (syntax, a function that
// is not allowed, a missing key) is reported for each item that has one; once a limit is
// passed, rendering stops at the item that passed it.
func Container(command, args []string, env []v1alpha1.TemplatedEnvVar, data *Data) (Rendered, field.ErrorList) {
	b := newBudget(time.Now())
	var out Rendered
	var errs field.ErrorList
	renderList := func(name string, items []string) []string {
		if items == nil {
			return nil
		}
		list := make([]string, len(items))
		for i, item := range items {
			if b.exceeded != nil {
				break
			}
			s, err := b.render(name, item, data)
			if err != nil {
				errs = append(errs, field.Invalid(specPath.Child(name).Index(i), item, err.Error()))
			}
			list[i] = s
		}
		return list
	}
	out.Command = renderList("command", command)
	out.Args = renderList("args", args)
	for i, e := range env {
		if b.exceeded != nil {
			break
		}
		v, err := b.render("env", e.Value, data)
		if err != nil {
			errs = append(errs, field.Invalid(specPath.Child("env").Index(i).Child("value"), e.Value, err.Error()))
		}
		out.Env = append(out.Env, corev1.EnvVar{Name: e.Name, Value: v})
	}
	if len(errs) > 0 {
		return Rendered{}, errs
	}
	return out, nil
}

// budget is what is left of one execution's rendering: time, output bytes, and the first limit
// passed, after which nothing more is rendered.
type budget struct {
	deadline time.Time
	left     int
	exceeded error
	// funcs are the allowed functions the items rendered so far call, bound to this budget.
	funcs template.FuncMap
}

// Errors for the limits of one execution's rendering.
var (
	errTime   = fmt.Errorf("rendering took longer than %s, the limit for an execution's command, args and env", MaxRenderTime)
	errOutput = fmt.Errorf("the rendered command, args and env are larger than %d KiB together", MaxOutputBytes>>10)
)

func newBudget(now time.Time) *budget {
	b := &budget{deadline: now.Add(MaxRenderTime), left: MaxOutputBytes}
	b.funcs = template.FuncMap{rangeGuard: b.guard}
	return b
}

// check returns the limit passed, if any: the deadline is checked on every write, every
// function call and every range iteration.
func (b *budget) check() error {
	if b.exceeded == nil && !time.Now().Before(b.deadline) {
		b.exceeded = errTime
	}
	return b.exceeded
}

// render renders one item. name is the template's name in error messages (command, args, env).
func (b *budget) render(name, text string, data *Data) (string, error) {
	if err := b.check(); err != nil {
		return "", fmt.Errorf("template: %s: %w", name, err)
	}
	tree, idents, err := parseChecked(name, text)
	if err != nil {
		return "", err
	}
	b.bind(idents)
	guardRanges(tree, tree.Root)
	t, err := template.New(name).Option("missingkey=error").Funcs(b.funcs).AddParseTree(name, tree)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&writer{b: b, buf: &buf}, data); err != nil {
		if execErr := (template.ExecError{}); !errors.As(err, &execErr) {
			// A write error comes back bare: name the item.
			return "", fmt.Errorf("template: %s: %w", name, err)
		}
		return "", err
	}
	return buf.String(), nil
}

// writer collects one item's output within the budget.
type writer struct {
	b   *budget
	buf *bytes.Buffer
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.b.check(); err != nil {
		return 0, err
	}
	if len(p) > w.b.left {
		w.b.exceeded = errOutput
		return 0, errOutput
	}
	w.b.left -= len(p)
	return w.buf.Write(p)
}

// parseChecked parses text and refuses what action templates may not use: define, template and
// block; ranges nested deeper than MaxRangeDepth; and any function not on the allowlist, named
// with the reason it was left out.
// It also returns the functions the template calls.
func parseChecked(name, text string) (*parse.Tree, map[string]bool, error) {
	tree := parse.New(name)
	// Functions are checked below, so that those left out on purpose get a clear message.
	tree.Mode = parse.SkipFuncCheck
	trees := map[string]*parse.Tree{}
	if _, err := tree.Parse(text, "", "", trees); err != nil {
		return nil, nil, err
	}
	// A define (or block) adds a tree of its own, or replaces this one when it takes its name.
	if len(trees) != 1 || trees[name] != tree {
		return nil, nil, fmt.Errorf("template: %s: define and block are not allowed in action templates: each item is one string", name)
	}
	idents := map[string]bool{}
	if err := checkNode(tree, tree.Root, 0, idents); err != nil {
		return nil, nil, err
	}
	return tree, idents, nil
}

// checkNode walks the parse tree below n; depth is the number of ranges around n. It adds the
// functions the tree calls to idents.
func checkNode(tree *parse.Tree, n parse.Node, depth int, idents map[string]bool) error {
	fail := func(n parse.Node, format string, args ...any) error {
		location, _ := tree.ErrorContext(n)
		return fmt.Errorf("template: %s: %s", location, fmt.Sprintf(format, args...))
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(tree, c, depth, idents); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkNode(tree, n.Pipe, depth, idents)
	case *parse.IfNode:
		return checkBranch(tree, &n.BranchNode, depth, depth, idents)
	case *parse.WithNode:
		return checkBranch(tree, &n.BranchNode, depth, depth, idents)
	case *parse.RangeNode:
		if depth+1 > MaxRangeDepth {
			return fail(n, "ranges may nest at most %d deep in action templates", MaxRangeDepth)
		}
		return checkBranch(tree, &n.BranchNode, depth+1, depth, idents)
	case *parse.TemplateNode:
		return fail(n, "template and block are not allowed in action templates: each item is one string")
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkNode(tree, c, depth, idents); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkNode(tree, a, depth, idents); err != nil {
				return err
			}
		}
	case *parse.ChainNode:
		return checkNode(tree, n.Node, depth, idents)
	case *parse.IdentifierNode:
		if isAllowed(n.Ident) {
			idents[n.Ident] = true
			return nil
		}
		if reason, ok := excluded[n.Ident]; ok {
			return fail(n, "function %q is not allowed in action templates: %s", n.Ident, reason)
		}
		return fail(n, "function %q not defined", n.Ident)
	}
	return nil
}

// checkBranch checks an if, with or range: bodyDepth applies to its list, depth to its else.
func checkBranch(tree *parse.Tree, n *parse.BranchNode, bodyDepth, depth int, idents map[string]bool) error {
	if err := checkNode(tree, n.Pipe, depth, idents); err != nil {
		return err
	}
	if err := checkNode(tree, n.List, bodyDepth, idents); err != nil {
		return err
	}
	return checkNode(tree, n.ElseList, depth, idents)
}

// rangeGuard is the function guardRanges adds to every range. It is named after the keyword so
// that its errors read "error calling range"; templates cannot call it themselves.
const rangeGuard = "range"

// guardRanges rewrites every range below n: its pipeline ends with a call of rangeGuard, which
// refuses to iterate more than MaxRangeIterations times, and its body starts with one, which
// checks the deadline on each iteration.
func guardRanges(tree *parse.Tree, n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			guardRanges(tree, c)
		}
	case *parse.IfNode:
		guardRanges(tree, n.List)
		guardRanges(tree, n.ElseList)
	case *parse.WithNode:
		guardRanges(tree, n.List)
		guardRanges(tree, n.ElseList)
	case *parse.RangeNode:
		guardRanges(tree, n.List)
		guardRanges(tree, n.ElseList)
		n.Pipe.Cmds = append(n.Pipe.Cmds, guardCommand(tree, n.Pos))
		tick := &parse.ActionNode{NodeType: parse.NodeAction, Pos: n.Pos, Line: n.Line,
			Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: n.Pos, Line: n.Line, Cmds: []*parse.CommandNode{guardCommand(tree, n.Pos)}}}
		if n.List == nil {
			n.List = &parse.ListNode{NodeType: parse.NodeList, Pos: n.Pos}
		}
		n.List.Nodes = append([]parse.Node{tick}, n.List.Nodes...)
	}
}

// guardCommand is a call of rangeGuard, at pos.
func guardCommand(tree *parse.Tree, pos parse.Pos) *parse.CommandNode {
	return &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos,
		Args: []parse.Node{parse.NewIdentifier(rangeGuard).SetTree(tree).SetPos(pos)}}
}

// guard is rangeGuard's implementation. Called with the ranged value, it returns it unchanged
// when it has at most MaxRangeIterations elements (or is an integer no larger); called with
// nothing, it checks the deadline and returns an empty string to print.
func (b *budget) guard(v ...any) (any, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return "", nil
	}
	val := reflect.ValueOf(v[0])
	for val.Kind() == reflect.Pointer || val.Kind() == reflect.Interface {
		if val.IsNil() {
			return v[0], nil
		}
		val = val.Elem()
	}
	var n uint64
	switch val.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n = uint64(max(val.Int(), 0))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n = val.Uint()
	case reflect.Array, reflect.Slice, reflect.Map:
		n = uint64(val.Len()) //nolint:gosec // G115: a length is never negative, so it fits a uint64.
	case reflect.Chan, reflect.Func:
		return nil, fmt.Errorf("cannot range over a %s in action templates", val.Kind())
	}
	if n > MaxRangeIterations {
		return nil, fmt.Errorf("a range may iterate at most %d times, not %d", MaxRangeIterations, n)
	}
	return v[0], nil
}

// Parameters decodes an execution's raw parameters (a JSON object, or empty) and applies the
// defaults of the JSON Schema schema (also raw, may be empty). Callers that decode many
// executions of one template compile the defaults once (CompileDefaults) instead.
func Parameters(raw, schema []byte) (map[string]any, error) {
	d, err := CompileDefaults(schema)
	if err != nil {
		return nil, err
	}
	return d.Parameters(raw)
}

// Defaults are the defaults a parameter schema declares, by property, nested objects included:
// what Parameters applies, extracted from the schema once. A nil *Defaults applies none. It is
// never changed after CompileDefaults, so one value serves concurrent callers.
type Defaults struct {
	props map[string]propDefault
}

type propDefault struct {
	value  any
	has    bool
	nested *Defaults
}

// CompileDefaults extracts the defaults of a raw JSON Schema (empty: none).
func CompileDefaults(schema []byte) (*Defaults, error) {
	if len(bytes.TrimSpace(schema)) == 0 {
		return nil, nil
	}
	var s map[string]any
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("parameter schema must be a JSON object: %w", err)
	}
	return defaultsOf(s), nil
}

func defaultsOf(schema map[string]any) *Defaults {
	props, _ := schema["properties"].(map[string]any)
	d := &Defaults{props: make(map[string]propDefault, len(props))}
	for name, p := range props {
		prop, ok := p.(map[string]any)
		if !ok {
			continue
		}
		v, has := prop["default"]
		d.props[name] = propDefault{value: v, has: has, nested: defaultsOf(prop)}
	}
	return d
}

// Parameters decodes raw parameters (a JSON object, or empty) and applies d.
func (d *Defaults) Parameters(raw []byte) (map[string]any, error) {
	params := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &params); err != nil {
			return nil, fmt.Errorf("parameters must be a JSON object: %w", err)
		}
		if params == nil {
			params = map[string]any{}
		}
	}
	d.apply(params)
	return params, nil
}

// apply fills the properties missing from obj with copies of their defaults, and recurses into
// nested objects that the schema describes.
func (d *Defaults) apply(obj map[string]any) {
	if d == nil {
		return
	}
	for name, p := range d.props {
		v, present := obj[name]
		if !present {
			if p.has {
				obj[name] = cloneJSON(p.value)
			}
			continue
		}
		if nested, ok := v.(map[string]any); ok {
			p.nested.apply(nested)
		}
	}
}

// cloneJSON copies a decoded JSON value, so that no execution's parameters share a map or a
// slice with the compiled defaults.
func cloneJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = cloneJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneJSON(e)
		}
		return out
	}
	return v
}
