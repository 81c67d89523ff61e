package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func testData() *Data {
	return &Data{
		Parameters: map[string]any{"replicas": float64(3), "name": "web; rm -rf /"},
		Target:     Target{Namespace: "prod", Kind: "Deployment", Name: "web"},
		Execution:  Execution{Name: "fix-1", Namespace: "ops", Attempt: 2},
		DryRun:     true,
	}
}

func TestContainer(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		args    []string
		env     []v1alpha1.TemplatedEnvVar
		want    Rendered
		wantErr []string
	}{
		{name: "literal", args: []string{"scale"}, want: Rendered{Args: []string{"scale"}}},
		{name: "parameters and target", args: []string{"--replicas={{ .Parameters.replicas }}", "{{ .Target.Namespace }}/{{ .Target.Name }}"},
			want: Rendered{Args: []string{"--replicas=3", "prod/web"}}},
		// A shell metacharacter stays inside its one argv entry.
		{name: "no shell", args: []string{"{{ .Parameters.name }}"}, want: Rendered{Args: []string{"web; rm -rf /"}}},
		{name: "sprig", args: []string{"{{ .Target.Kind | lower }}", "{{ .DryRun | toString }}", "{{ .Execution.Attempt }}"},
			want: Rendered{Args: []string{"deployment", "true", "2"}}},
		{name: "command, args and env", command: []string{"/bin/{{ .Target.Kind | lower }}"}, args: []string{"{{ .Execution.Name }}"},
			env:  []v1alpha1.TemplatedEnvVar{{Name: "A", Value: "{{ .Target.Name }}"}, {Name: "B"}},
			want: Rendered{Command: []string{"/bin/deployment"}, Args: []string{"fix-1"}, Env: []corev1.EnvVar{{Name: "A", Value: "web"}, {Name: "B"}}}},
		{name: "missing key", command: []string{"{{ .Parameters.nope }}"},
			wantErr: []string{`spec.command[0]: Invalid value: "{{ .Parameters.nope }}": template: command:1:14: executing "command" at <.Parameters.nope>: map has no entry for key "nope"`}},
		{name: "env is not allowed", args: []string{`{{ env "HOME" }}`},
			wantErr: []string{`spec.args[0]: Invalid value: "{{ env \"HOME\" }}": template: args:1:3: function "env" is not allowed in action templates: it reads the manager's environment`}},
		{name: "randomness is not allowed", args: []string{`{{ randAlphaNum 5 }}`},
			wantErr: []string{`function "randAlphaNum" is not allowed in action templates: its result is random`}},
		{name: "unknown function", args: []string{`{{ nosuch 5 }}`}, wantErr: []string{`spec.args[0]: Invalid value: "{{ nosuch 5 }}": template: args:1:3: function "nosuch" not defined`}},
		{name: "every failing item is reported", args: []string{"ok", "{{ .Target", "{{ now }}"}, env: []v1alpha1.TemplatedEnvVar{{Name: "X", Value: "{{ .Nope }}"}},
			wantErr: []string{
				`spec.args[1]: Invalid value: "{{ .Target": template: args:1: unclosed action`,
				`spec.args[2]: Invalid value: "{{ now }}": template: args:1:3: function "now" is not allowed`,
				`spec.env[0].value: Invalid value: "{{ .Nope }}": template: env:1:3: executing "env" at <.Nope>: can't evaluate field Nope`,
			}},
		{name: "nil stays nil", want: Rendered{}},
		{name: "empty stays empty", command: []string{}, args: []string{}, want: Rendered{Command: []string{}, Args: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Container(tt.command, tt.args, tt.env, testData())
			if tt.wantErr != nil {
				if len(errs) != len(tt.wantErr) {
					t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.wantErr), errs)
				}
				for i, want := range tt.wantErr {
					if !strings.Contains(errs[i].Error(), want) {
						t.Errorf("error %d = %q, want one containing %q", i, errs[i].Error(), want)
					}
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestForbiddenFunctions checks that each function left out is refused when the template is
// parsed, with its name and the reason.
func TestForbiddenFunctions(t *testing.T) {
	tests := []struct{ template, name, reason string }{
		{`{{ repeat 1500000000 "x" }}`, "repeat", "it can build output of any size"},
		{`{{ "x" | repeat 5 }}`, "repeat", "it can build output of any size"},
		{`{{ range until 5 }}{{ end }}`, "until", "it can build output of any size"},
		{`{{ untilStep 0 10 1 }}`, "untilStep", "it can build output of any size"},
		{`{{ seq 1 10 }}`, "seq", "it can build output of any size"},
		{`{{ indent 1000000 "x" }}`, "indent", "it can build output of any size"},
		{`{{ nindent 1000000 "x" }}`, "nindent", "it can build output of any size"},
		{`{{ list 1 2 | uniq }}`, "uniq", "square"},
		{`{{ toPrettyJson .Parameters }}`, "toPrettyJson", "square"},
		{`{{ randAlphaNum 5 }}`, "randAlphaNum", "random"},
		{`{{ randInt 1 5 }}`, "randInt", "random"},
		{`{{ uuidv4 }}`, "uuidv4", "random"},
		{`{{ shuffle "abc" }}`, "shuffle", "random"},
		{`{{ genPrivateKey "rsa" }}`, "genPrivateKey", "keys, certificates"},
		{`{{ genCA "x" 365 }}`, "genCA", "keys, certificates"},
		{`{{ derivePassword 1 "long" "p" "u" "s" }}`, "derivePassword", "password"},
		{`{{ bcrypt "x" }}`, "bcrypt", "password"},
		{`{{ htpasswd "u" "p" }}`, "htpasswd", "password"},
		{`{{ env "HOME" }}`, "env", "environment"},
		{`{{ expandenv "$HOME" }}`, "expandenv", "environment"},
		{`{{ now }}`, "now", "clock"},
		{`{{ date "2006" 0 }}`, "date", "clock"},
		{`{{ getHostByName "example.com" }}`, "getHostByName", "DNS"},
		{`{{ set (dict) "a" 1 }}`, "set", "in place"},
		{`{{ osBase "/a" }}`, "osBase", "operating system"},
		{`{{ mustToJson . }}`, "mustToJson", "without must is allowed"},
		{`{{ call .Parameters.f }}`, "call", "no value a template sees is a function"},
		{`{{ if true }}{{ with 1 }}{{ upper (lower (repeat 2 "x")) }}{{ end }}{{ end }}`, "repeat", "it can build output of any size"},
		{`{{ printf "%s" (now) }}`, "now", "clock"},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			_, errs := Container(nil, []string{tt.template}, nil, testData())
			want := fmt.Sprintf("function %q is not allowed in action templates: ", tt.name)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) || !strings.Contains(errs[0].Error(), tt.reason) {
				t.Fatalf("errors %v, want one containing %q and %q", errs, want, tt.reason)
			}
		})
	}
}

func TestStructuralLimits(t *testing.T) {
	data := testData()
	data.Parameters["list"] = []any{1, 2}
	tests := []struct {
		name, template, want, wantErr string
	}{
		{name: "define", template: `{{ define "x" }}y{{ end }}{{ .Target.Name }}`, wantErr: "define and block are not allowed"},
		{name: "define taking the item's name", template: `{{ define "args" }}{{ .Target.Name }}{{ end }}`, wantErr: "define and block are not allowed"},
		{name: "template", template: `{{ template "x" }}`, wantErr: "template and block are not allowed"},
		{name: "block", template: `{{ block "x" . }}y{{ end }}`, wantErr: "not allowed in action templates"},
		{name: "ranges two deep", template: `{{ range .Parameters.list }}{{ range $.Parameters.list }}x{{ end }}{{ end }}`, want: "xxxx"},
		{name: "ranges three deep", template: `{{ range .Parameters.list }}{{ range $.Parameters.list }}{{ range 2 }}x{{ end }}{{ end }}{{ end }}`,
			wantErr: "args:1:66: ranges may nest at most 2 deep in action templates"},
		{name: "ranges three deep inside if and with", template: `{{ range 2 }}{{ if true }}{{ range 2 }}{{ with 1 }}{{ range 2 }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}`,
			wantErr: "ranges may nest at most 2 deep"},
		{name: "a range in an else is not nested", template: `{{ range 0 }}{{ else }}{{ range 2 }}{{ range 2 }}x{{ end }}{{ end }}{{ end }}`, want: "xxxx"},
		{name: "break and continue", template: `{{ range $i, $e := .Parameters.list }}{{ if eq $i 0 }}{{ continue }}{{ end }}{{ $e }}{{ break }}{{ end }}`, want: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Container(nil, []string{tt.template}, nil, data)
			if tt.wantErr != "" {
				if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr) {
					t.Fatalf("errors %v, want one containing %q", errs, tt.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got.Args[0] != tt.want {
				t.Fatalf("got %q, want %q", got.Args[0], tt.want)
			}
		})
	}
}

func TestRuntimeLimits(t *testing.T) {
	long := strings.Repeat("a", 40<<10)
	list := func(n int) []any {
		l := make([]any, n)
		for i := range l {
			l[i] = i
		}
		return l
	}
	tests := []struct {
		name    string
		args    []string
		env     []v1alpha1.TemplatedEnvVar
		params  map[string]any
		wantErr string
		// wantItem is the path of the item that fails.
		wantItem string
	}{
		{name: "range over a huge integer", args: []string{"{{ range (int .Parameters.n) }}x{{ end }}"}, params: map[string]any{"n": 1e9},
			wantErr: "error calling range: a range may iterate at most 1000 times, not 1000000000", wantItem: "spec.args[0]"},
		{name: "range over a huge literal", args: []string{"{{ range 1000000000 }}{{ end }}"},
			wantErr: "a range may iterate at most 1000 times", wantItem: "spec.args[0]"},
		{name: "range over a long list", args: []string{"ok", "{{ range .Parameters.l }}{{ end }}"}, params: map[string]any{"l": list(1001)},
			wantErr: "a range may iterate at most 1000 times, not 1001", wantItem: "spec.args[1]"},
		{name: "range over a large map", args: []string{"{{ range $k, $v := .Parameters.m }}{{ end }}"},
			params: map[string]any{"m": func() map[string]any {
				m := map[string]any{}
				for i := range 1001 {
					m[fmt.Sprint(i)] = i
				}
				return m
			}()},
			wantErr: "a range may iterate at most 1000 times", wantItem: "spec.args[0]"},
		{name: "range over a computed count", args: []string{"{{ range (mul 1000 1000) }}{{ end }}"},
			wantErr: "a range may iterate at most 1000 times", wantItem: "spec.args[0]"},
		{name: "one item over the output limit", args: []string{"{{ range 1000 }}{{ $.Parameters.s }}{{ end }}"}, params: map[string]any{"s": strings.Repeat("x", 100)},
			wantErr: "template: args: the rendered command, args and env are larger than 64 KiB together", wantItem: "spec.args[0]"},
		{name: "items over the output limit together", args: []string{"{{ .Parameters.s }}"}, params: map[string]any{"s": long},
			env:     []v1alpha1.TemplatedEnvVar{{Name: "A", Value: "{{ .Parameters.s }}"}},
			wantErr: "larger than 64 KiB together", wantItem: "spec.env[0].value"},
		{name: "a string doubled in a loop", args: []string{`{{ $s := "xx" }}{{ range 100 }}{{ $s = cat $s $s }}{{ end }}`},
			wantErr: "error calling cat: the result is larger than 64 KiB", wantItem: "spec.args[0]"},
		{name: "a list doubled in a loop", args: []string{`{{ $l := list 1 }}{{ range 100 }}{{ $l = list $l $l }}{{ end }}{{ toJson $l }}`},
			wantErr: "error calling list: the result is larger than 64 KiB", wantItem: "spec.args[0]"},
		{name: "a list nested in a loop", args: []string{`{{ $l := list }}{{ range 200 }}{{ $l = list $l }}{{ end }}`},
			wantErr: "error calling list: the result is nested more than 100 deep", wantItem: "spec.args[0]"},
		{name: "a string doubled by print", args: []string{`{{ $s := "<" }}{{ range 100 }}{{ $s = print $s $s }}{{ end }}`},
			wantErr: "error calling print: the result is larger than 64 KiB", wantItem: "spec.args[0]"},
		{name: "replace with an empty old string", args: []string{`{{ replace "" .Parameters.s .Parameters.s }}`}, params: map[string]any{"s": strings.Repeat("x", 1000)},
			wantErr: "error calling replace: the result would be 1002000 bytes", wantItem: "spec.args[0]"},
		{name: "join with a long separator", args: []string{`{{ join .Parameters.s (splitList "" .Parameters.s) }}`}, params: map[string]any{"s": strings.Repeat("x", 1000)},
			wantErr: "error calling join: the result would be 1001000 bytes", wantItem: "spec.args[0]"},
		{name: "regexReplaceAll with a long replacement", args: []string{`{{ regexReplaceAll "" .Parameters.s .Parameters.s }}`}, params: map[string]any{"s": strings.Repeat("x", 1000)},
			wantErr: "error calling regexReplaceAll: the result would be", wantItem: "spec.args[0]"},
		{name: "printf with a huge width", args: []string{`{{ printf "%01000000d" 1 }}`},
			wantErr: "error calling printf: printf width or precision 01000000 is larger", wantItem: "spec.args[0]"},
		{name: "printf with a width from an argument", args: []string{`{{ printf "%*d" 100000 1 }}`},
			wantErr: "taken from an argument (*) are not allowed", wantItem: "spec.args[0]"},
		{name: "a regular expression too large", args: []string{`{{ regexMatch "[ab]{600}[cd]{600}" "a" }}`},
			wantErr: "is too large for action templates", wantItem: "spec.args[0]"},
		{name: "a regular expression too large for its input", args: []string{`{{ regexMatch "[ab]{500}" .Parameters.s }}`}, params: map[string]any{"s": long},
			wantErr: "is too large for 40960 bytes of input", wantItem: "spec.args[0]"},
		{name: "a panic is an error", args: []string{`{{ div 1 0 }}`},
			wantErr: "error calling div: runtime error: integer divide by zero", wantItem: "spec.args[0]"},
		{name: "a function value is not ranged over", args: []string{`{{ range .Parameters.f }}{{ end }}`}, params: map[string]any{"f": func(func(int) bool) {}},
			wantErr: "cannot range over a func in action templates", wantItem: "spec.args[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := testData()
			for k, v := range tt.params {
				data.Parameters[k] = v
			}
			start := time.Now()
			_, errs := Container(nil, tt.args, tt.env, data)
			if d := time.Since(start); d > MaxRenderTime/2 {
				t.Errorf("took %s", d)
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr) || errs[0].Field != tt.wantItem {
				t.Fatalf("errors %v, want one at %s containing %q", errs, tt.wantItem, tt.wantErr)
			}
		})
	}
}

// TestTimeLimit checks that templates that would run for minutes stop after MaxRenderTime.
func TestTimeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	list := make([]any, 1000)
	tests := []struct {
		name string
		args []string
		s    string
	}{
		// A million replacements over 4 KiB each.
		{name: "nested ranges of regexReplaceAll", s: strings.Repeat("ab", 2048),
			args: []string{`{{ range $.Parameters.list }}{{ range $.Parameters.list }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`}},
		// Finding every match can take time quadratic in the input: minutes for this one.
		{name: "regexFindAll", s: strings.Repeat("a", 60000), args: []string{`{{ $m := regexFindAll "a.*b|a" .Parameters.s -1 }}`}},
		// The time is for the whole execution, not for each item.
		{name: "the limit is shared by all items", s: strings.Repeat("ab", 2048), args: []string{
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
			`{{ range $.Parameters.list }}{{ range slice $.Parameters.list 0 200 }}{{ $x := regexReplaceAll "a" $.Parameters.s "c" }}{{ end }}{{ end }}`,
		}},
		// Nothing but ranges and conditions: the body's first step checks the deadline.
		{name: "empty iterations", s: "x", args: []string{
			`{{ range $.Parameters.list }}{{ range $.Parameters.list }}` + strings.Repeat(`{{ if $.DryRun }}{{ end }}`, 1000) + `{{ end }}{{ end }}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := testData()
			data.Parameters["list"], data.Parameters["s"] = list, tt.s
			start := time.Now()
			_, errs := Container(nil, tt.args, nil, data)
			d := time.Since(start)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "rendering took longer than 1s") {
				t.Fatalf("errors %v, want one saying rendering took longer than 1s", errs)
			}
			// A call may stop a little early, when it could not finish before the deadline.
			if d < MaxRenderTime*9/10 || d > 2*MaxRenderTime {
				t.Fatalf("took %s, want about %s", d, MaxRenderTime)
			}
		})
	}
}

// TestSameAsSprig checks that benign templates render exactly as they did with sprig's
// hermetic function map, bounded replacements included.
func TestSameAsSprig(t *testing.T) {
	data := testData()
	data.Parameters["list"] = []any{"b", "a", float64(3), nil, map[string]any{"k": "v"}}
	data.Parameters["m"] = map[string]any{"z": 1.5, "a": []any{true}}
	data.Parameters["s"] = "Hello, World: foo-bar_baz  qux"
	data.Parameters["strs"] = []any{"a", "b", "a"}
	for _, text := range []string{
		"--replicas={{ .Parameters.replicas }}",
		"{{ .Target.Name | upper | trunc 2 }}{{ .Target.Kind | lower | quote }}{{ squote .Execution.Name }}",
		"{{ range $i, $e := .Parameters.list }}{{ $i }}={{ $e }},{{ end }}",
		"{{ range $k, $v := .Parameters.m }}{{ $k }}:{{ $v }};{{ else }}none{{ end }}",
		"{{ range 3 }}{{ . }}{{ end }}{{ range list }}x{{ else }}empty{{ end }}",
		"{{ range $x := .Parameters.strs }}{{ range $y := $.Parameters.strs }}{{ if eq $x $y }}!{{ end }}{{ end }}{{ end }}",
		"{{ toJson .Parameters }}|{{ toRawJson .Parameters.m }}|{{ (fromJson `{\"a\":1}`).a }}",
		"{{ replace \"o\" \"0\" .Parameters.s }}|{{ replace \"\" \"-\" \"abc\" }}|{{ join \",\" .Parameters.list }}|{{ join \"+\" (list 1 2) }}",
		"{{ splitList \" \" .Parameters.s | join \"/\" }}|{{ (split \":\" .Parameters.s)._1 }}|{{ splitn \"-\" 2 \"a-b-c\" }}",
		"{{ regexMatch \"^H\" .Parameters.s }}|{{ regexFind \"[a-z]+\" .Parameters.s }}|{{ regexFindAll \"[a-z]+\" .Parameters.s -1 }}|{{ regexFindAll \"o\" .Parameters.s 2 }}",
		"{{ regexReplaceAll \"(o)(.)\" .Parameters.s \"<${2}$1>\" }}|{{ regexReplaceAllLiteral \"o\" .Parameters.s \"$1\" }}|{{ regexReplaceAll \"x*\" \"abc\" \"-\" }}",
		"{{ regexSplit \"[ ,:]+\" .Parameters.s -1 }}|{{ regexSplit \"o\" .Parameters.s 2 }}|{{ regexQuoteMeta \"a.b*c\" }}|{{ regexFindAll \"a*\" \"baaab\" -1 }}",
		"{{ printf \"%05d|%-8s|%.2f|%[2]v\" 42 \"x\" 3.14159 }}|{{ print 1 2 \"a\" }}|{{ println \"x\" }}|{{ html \"<a>\" }}|{{ js \"'\" }}|{{ urlquery \"a b\" }}",
		"{{ default \"d\" nil }}{{ default \"d\" .Parameters.s }}{{ empty .Parameters.list }}{{ coalesce nil \"\" \"c\" }}{{ ternary \"y\" \"n\" .DryRun }}{{ all 1 true }}{{ any 0 \"\" }}",
		"{{ add 1 2 3 }} {{ add1 .Parameters.replicas }} {{ sub 5 2 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }} {{ max 1 5 3 }} {{ min 4 2 }} {{ int \"12\" }} {{ atoi \"7\" }} {{ int64 3.7 }} {{ float64 \"1.5\" }}",
		"{{ $d := dict \"a\" 1 \"b\" 2 }}{{ get $d \"a\" }}{{ hasKey $d \"b\" }}{{ keys $d | toStrings | len }}{{ values $d | len }}{{ pick $d \"a\" }}{{ omit $d \"a\" }}{{ pluck \"a\" $d $d }}{{ dig \"a\" \"x\" $d }}",
		"{{ first .Parameters.list }}{{ last .Parameters.list }}{{ rest .Parameters.list }}{{ initial .Parameters.list }}{{ append .Parameters.list 9 }}{{ prepend .Parameters.list 0 }}{{ concat .Parameters.list (list 8) }}{{ reverse .Parameters.list }}{{ has \"a\" .Parameters.list }}{{ compact .Parameters.list }}",
		"{{ trim \"  x \" }}{{ trimAll \"$\" \"$x$\" }}{{ trimPrefix \"a\" \"ab\" }}{{ trimSuffix \"b\" \"ab\" }}{{ nospace \"a b\" }}{{ title \"a b\" }}{{ untitle \"A B\" }}{{ snakecase \"FooBar\" }}{{ camelcase \"foo_bar\" }}{{ kebabcase \"FooBar\" }}{{ substr 1 3 \"abcd\" }}{{ abbrev 5 \"abcdefgh\" }}",
		"{{ contains \"W\" .Parameters.s }}{{ hasPrefix \"H\" .Parameters.s }}{{ hasSuffix \"x\" .Parameters.s }}{{ cat \"a\" 1 nil \"b\" }}{{ toString 1.5 }}",
		"{{ b64enc \"x\" }} {{ b64dec \"eA==\" }} {{ sha1sum \"x\" }} {{ sha256sum \"x\" }} {{ sha512sum \"x\" | trunc 8 }} {{ adler32sum \"x\" }}",
		"{{ base \"/a/b.c\" }} {{ dir \"/a/b.c\" }} {{ clean \"/a/../b\" }} {{ ext \"/a/b.c\" }} {{ isAbs \"a\" }} {{ kindOf .Parameters.list }} {{ kindIs \"map\" .Parameters.m }}",
		"{{ and 1 0 }}{{ or 0 2 }}{{ not true }}{{ ne 1 2 }}{{ lt 1 2 }}{{ le 2 2 }}{{ gt 1 2 }}{{ ge 2 1 }}{{ len .Parameters.list }}{{ index .Parameters.list 1 }}{{ slice .Parameters.list 1 3 }}{{ slice .Parameters.list 2 }}{{ index .Parameters.m \"z\" }}",
		"{{ with .Parameters.m }}{{ .z }}{{ end }}{{ if .DryRun }}--dry-run{{ else }}--apply{{ end }}{{- /* a comment */ -}} x",
		"{{ $n := 0 }}{{ range .Parameters.list }}{{ $n = add1 $n }}{{ end }}{{ $n }}",
	} {
		t.Run(text, func(t *testing.T) {
			old, err := template.New("args").Option("missingkey=error").Funcs(sprig.HermeticTxtFuncMap()).Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := old.Execute(&want, data); err != nil {
				t.Fatal(err)
			}
			got, errs := Container(nil, []string{text}, nil, data)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got.Args[0] != want.String() {
				t.Fatalf("got %q, want %q", got.Args[0], want.String())
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

// FuzzRender renders arbitrary template text with arbitrary parameters, in two args and an env
// value: errors are fine if they are field errors at the refused items' paths and nothing is
// rendered with them; panics, output over the limit, renders much longer than the time limit,
// and the same text rendering differently (in another item, or the next time) are not.
func FuzzRender(f *testing.F) {
	for _, seed := range []struct{ text, params string }{
		{"--replicas={{ .Parameters.replicas }}", `{"replicas":3}`},
		{"{{ .Target.Name | upper | trunc 3 }}", `{}`},
		{`{{ env "HOME" }}`, `{}`},
		{"{{ range .Parameters.list }}{{ . }},{{ end }}", `{"list":[1,"a",null]}`},
		{"{{ .Parameters.a.b.c }}", `{"a":{"b":{"c":true}}}`},
		{"{{ template \"x\" }}", `{}`},
		{"{{ toJson .Parameters }}", `{"k":[{"n":1.5}]}`},
		{`{{ repeat 1500000000 "x" }}`, `{}`},
		{"{{ range (int .Parameters.n) }}x{{ end }}", `{"n":1e9}`},
		{`{{ $s := "ab" }}{{ range 64 }}{{ $s = cat $s $s }}{{ end }}{{ $s }}`, `{}`},
		{`{{ range 1000 }}{{ range 1000 }}{{ regexReplaceAll "a" $.Parameters.s "bb" }}{{ end }}{{ end }}`, `{"s":"aaaa"}`},
		{`{{ printf "%0100000d" 1 }}`, `{}`},
		// Functions whose result could depend on a map's iteration order.
		{`{{ keys .Parameters | join "," }}`, `{"a":1,"b":2,"c":3,"d":4,"e":5}`},
		{`{{ values .Parameters | toJson }}`, `{"a":1,"b":2,"c":3,"d":4,"e":5}`},
		{`{{ toJson (omit .Parameters "a") }}{{ pick .Parameters "b" "c" }}`, `{"a":1,"b":2,"c":3}`},
	} {
		f.Add(seed.text, seed.params)
	}
	// The items below, by the path at which Container reports an error in one of them.
	items := map[string]bool{"spec.args[0]": true, "spec.args[1]": true, "spec.env[0].value": true}
	f.Fuzz(func(t *testing.T, text, params string) {
		p, err := Parameters([]byte(params), nil)
		if err != nil {
			return
		}
		data := &Data{Parameters: p, Target: Target{Namespace: "ns", Kind: "Pod", Name: "p"}}
		render := func() (Rendered, field.ErrorList) {
			start := time.Now()
			got, errs := Container(nil, []string{text, text}, []v1alpha1.TemplatedEnvVar{{Name: "V", Value: text}}, data)
			if d := time.Since(start); d > 3*MaxRenderTime {
				t.Fatalf("rendering took %s", d)
			}
			return got, errs
		}
		got, errs := render()
		if len(errs) > 0 {
			// A refused template renders nothing, and says why at the path of each item it
			// refused, once per item, with the item's text as the bad value.
			if !reflect.DeepEqual(got, Rendered{}) {
				t.Fatalf("rendered %+v along with errors %v", got, errs)
			}
			seen := map[string]bool{}
			for _, e := range errs {
				if e == nil || !items[e.Field] || seen[e.Field] {
					t.Fatalf("error %v is not at the path of one item, once: %v", e, errs)
				}
				seen[e.Field] = true
				if e.Type != field.ErrorTypeInvalid || e.BadValue != any(text) || e.Detail == "" || !strings.HasPrefix(e.Error(), e.Field+": ") {
					t.Fatalf("error %#v is not an Invalid error on the item's text with a reason", e)
				}
			}
			return
		}
		if got.Command != nil || len(got.Args) != 2 || len(got.Env) != 1 || got.Env[0].Name != "V" {
			t.Fatalf("rendered %+v, want two args and the env variable V", got)
		}
		// Rendering is hermetic (no clock, no randomness, no environment): the same text renders
		// the same in every item, and again.
		if got.Args[0] != got.Args[1] || got.Args[0] != got.Env[0].Value {
			t.Fatalf("the same template rendered differently: %q, %q, %q", got.Args[0], got.Args[1], got.Env[0].Value)
		}
		if size := len(got.Args[0]) + len(got.Args[1]) + len(got.Env[0].Value); size > MaxOutputBytes {
			t.Fatalf("rendered %d bytes", size)
		}
		if again, errs := render(); len(errs) == 0 && !reflect.DeepEqual(again, got) {
			t.Fatalf("rendered %+v, then %+v", got, again)
		}
		if _, err := json.Marshal(got); err != nil {
			t.Fatal(err)
		}
	})
}

// One compiled Defaults serves every execution of a template: what one execution's template
// does with its parameters must not reach the next one's defaults.
func TestDefaultsAreCopiedIntoEachExecution(t *testing.T) {
	d, err := CompileDefaults([]byte(`{"type":"object","properties":{
		"labels":{"type":"object","default":{"team":"sre"}},
		"hosts":{"type":"array","default":["a","b"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.Parameters(nil)
	if err != nil {
		t.Fatal(err)
	}
	first["labels"].(map[string]any)["team"] = "changed"
	first["hosts"].([]any)[0] = "changed"
	second, err := d.Parameters([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"labels": map[string]any{"team": "sre"}, "hosts": []any{"a", "b"}}
	if !reflect.DeepEqual(second, want) {
		t.Fatalf("second execution's parameters = %#v, want %#v", second, want)
	}
}
