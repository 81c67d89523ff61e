package render

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
)

// textTemplateBuiltins are text/template's own functions.
var textTemplateBuiltins = []string{"and", "or", "not", "call", "html", "index", "slice", "js", "len",
	"print", "printf", "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"}

// TestEveryFunctionIsDecided checks that each function sprig and text/template have is either
// allowed or excluded with a reason, so that a new version cannot add one unnoticed.
func TestEveryFunctionIsDecided(t *testing.T) {
	names := slices.Concat(textTemplateBuiltins, slices.Collect(func(yield func(string) bool) {
		for name := range sprig.GenericFuncMap() {
			if !yield(name) {
				return
			}
		}
	}))
	for _, name := range names {
		_, ok := excluded[name]
		if isAllowed(name) == ok {
			t.Errorf("function %q is allowed: %v, excluded: %v; want exactly one", name, isAllowed(name), ok)
		}
	}
	for name, reason := range excluded {
		if !slices.Contains(names, name) {
			t.Errorf("excluded function %q is neither sprig's nor text/template's", name)
		}
		if reason == "" {
			t.Errorf("excluded function %q has no reason", name)
		}
	}
	for name, fn := range allowed {
		if fn == nil && !slices.Contains(textTemplateBuiltins, name) {
			t.Errorf("allowed function %q has no implementation", name)
		}
	}
	// Every allowed function, bound to a budget, is a valid template function.
	template.New("x").Funcs(newBudget(time.Now()).funcs)
}

// TestDocListsAllowedFunctions checks that the documentation of template functions lists
// exactly the allowed functions.
func TestDocListsAllowedFunctions(t *testing.T) {
	f, err := os.Open("../../docs/template-functions.md")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	entry := regexp.MustCompile("^- `([A-Za-z0-9_]+)`")
	var documented []string
	section := ""
	for s := bufio.NewScanner(f); s.Scan(); {
		line := s.Text()
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
			continue
		}
		if m := entry.FindStringSubmatch(line); m != nil && section == "Allowed functions" {
			documented = append(documented, m[1])
		}
	}
	if len(documented) == 0 {
		t.Fatal("no functions found in the section Allowed functions")
	}
	for _, name := range documented {
		if !isAllowed(name) {
			t.Errorf("the documentation lists %q, which is not allowed", name)
		}
	}
	for name := range allowed {
		if !slices.Contains(documented, name) {
			t.Errorf("the documentation does not list %q", name)
		}
	}
	slices.Sort(documented)
	if d := slices.Compact(slices.Clone(documented)); len(d) != len(documented) {
		t.Errorf("the documentation lists a function twice")
	}
}
