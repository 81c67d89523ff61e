package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// predefinedCeiling holds the ceiling fragments the chart installs for the predefined actions.
const predefinedCeiling = "../../config/rbac/ceiling-predefined.yaml"

// validate runs the plugin's validate command with args and returns its exit code, standard
// output and standard error.
func validate(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(append([]string{"validate"}, args...), genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// lines splits output into its lines, none for empty output.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func TestValidatePassesThePredefinedTemplates(t *testing.T) {
	files, err := filepath.Glob("../../templates/*.yaml")
	if err != nil || len(files) != 7 {
		t.Fatalf("templates/: %v, %v; want the seven predefined actions", files, err)
	}
	args := []string{"--ceiling", predefinedCeiling, "-f", "../../test/demo/test-action.yaml"}
	want := []string{"test-action: ok"}
	for _, f := range files {
		args = append(args, "-f", f)
		want = append(want, strings.TrimSuffix(filepath.Base(f), ".yaml")+": ok")
	}
	code, stdout, stderr := validate(t, "", args...)
	if code != exitOK || !slices.Equal(lines(stdout), want) || stderr != "" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestValidatePassesTheExamples checks every template under examples/ against the predefined
// ceiling and the examples' own ceiling fragments, as the guide has an author do.
func TestValidatePassesTheExamples(t *testing.T) {
	if _, err := os.Stat("../../examples"); err != nil {
		t.Skip("no examples/")
	}
	ceilings := []string{"--ceiling", predefinedCeiling}
	err := filepath.WalkDir("../../examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		if _, err := readCeiling(path); err == nil {
			ceilings = append(ceilings, "--ceiling", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := validate(t, "", append(ceilings, "-R", "-f", "../../examples")...)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, l := range lines(stdout) {
		if !strings.HasSuffix(l, ": ok") {
			t.Errorf("not ok: %s", l)
		}
	}
	for _, name := range []string{"kubectl-label", "label-deployment"} {
		if !strings.Contains(stdout, name+": ok") {
			t.Errorf("the example %s was not validated:\n%s", name, stdout)
		}
	}
}

// TestValidateRefusesTheBadTemplates runs validate on each file of testdata/bad, one defect
// each, against the predefined ceiling. A file's "# want: " comment lines are the problems
// validate must print for it, in order, each as the webhook words it.
func TestValidateRefusesTheBadTemplates(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata/bad: %v, %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range lines(string(data)) {
				if w, ok := strings.CutPrefix(l, "# want: "); ok {
					want = append(want, f+": "+name+": "+w)
				}
			}
			if len(want) == 0 {
				t.Fatal("no # want: line")
			}
			code, stdout, stderr := validate(t, "", "-f", f, "--ceiling", predefinedCeiling)
			if code != exitFailed {
				t.Errorf("exit %d, want %d", code, exitFailed)
			}
			if got := lines(stdout); !slices.Equal(got, want) {
				t.Errorf("stdout\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !strings.HasPrefix(stderr, "error: ") {
				t.Errorf("stderr %q, want a last word", stderr)
			}
		})
	}
}

func TestValidateReadsDocumentsAndFolders(t *testing.T) {
	const stream = `# A ConfigMap, an empty document, a template and a broken template.
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata: {name: first}
spec: {image: kubernaut-actions, targetKinds: [Deployment], args: ["{{ .Target.Name }}"]}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata: {name: second}
spec: {image: kubernaut-actions, targetKinds: [Deployment], args: ["{{ .Target.Nme }}"], env: [{name: TARGET_NAME}]}
`
	code, stdout, stderr := validate(t, stream, "-f", "-")
	wantOut := []string{
		"first: ok",
		`-: second: spec.args[0]: Invalid value: "{{ .Target.Nme }}": template: args:1:10: executing "args" at <.Target.Nme>: can't evaluate field Nme in type render.Target`,
		"-: second: spec.env[0].name: Forbidden: TARGET_NAME is set by the executor and cannot be overridden",
	}
	wantErr := []string{
		"note: no --ceiling: the RBAC rules are not checked against a ceiling",
		"note: -: document 1: skipped ConfigMap settings, not an ActionTemplate",
		"error: 2 problems; 1 of 2 ActionTemplates passed",
	}
	if code != exitFailed || !slices.Equal(lines(stdout), wantOut) || !slices.Equal(lines(stderr), wantErr) {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// A folder is its *.yaml files, in name order; -R adds its subfolders'.
	dir := t.TempDir()
	write := func(path, name string) {
		t.Helper()
		tpl := "apiVersion: kubernetesexecution.kubernaut.io/v1alpha1\nkind: ActionTemplate\nmetadata: {name: " + name + "}\nspec: {image: x, targetKinds: [Pod]}\n"
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(tpl), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "b.yaml"), "b")
	write(filepath.Join(dir, "a.yaml"), "a")
	write(filepath.Join(dir, "notes.txt"), "not-read")
	write(filepath.Join(dir, "sub", "c.yaml"), "c")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-f", dir}, []string{"a: ok", "b: ok"}},
		{[]string{"-R", "-f", dir}, []string{"a: ok", "b: ok", "c: ok"}},
	} {
		code, stdout, stderr := validate(t, "", tc.args...)
		if code != exitOK || !slices.Equal(lines(stdout), tc.want) {
			t.Errorf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, stdout, stderr)
		}
	}
}

func TestValidateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	noRole := filepath.Join(dir, "binding.yaml")
	if err := os.WriteFile(noRole, []byte("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no -f", nil, `error: required flag(s) "filename" not set`},
		{"a file that cannot be read", []string{"-f", filepath.Join(dir, "missing.yaml")}, "error: stat " + filepath.Join(dir, "missing.yaml") + ": no such file or directory"},
		{"a folder without templates", []string{"-f", dir, "--ceiling", predefinedCeiling}, "error: no ActionTemplate in " + dir},
		{"a ceiling without ClusterRole", []string{"-f", "../../templates", "--ceiling", noRole}, "error: --ceiling " + noRole + " holds no ClusterRole (rbac.authorization.k8s.io/v1)"},
		{"an argument", []string{"-f", "../../templates", "extra"}, `error: unknown command "extra" for "kubectl kubernaut validate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := validate(t, "", tc.args...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want+"\nSee 'kubectl kubernaut validate --help' for usage.\n") {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

func TestValidateReportsYAMLThatDoesNotParse(t *testing.T) {
	code, stdout, stderr := validate(t, "kind: ActionTemplate\nspec: [\n", "-f", "-", "--ceiling", predefinedCeiling)
	want := "-: document 1 does not parse: error converting YAML to JSON: yaml: line 2: did not find expected node content\n"
	if code != exitFailed || stdout != want || !strings.HasSuffix(stderr, "error: 1 problem; 0 of 0 ActionTemplates passed\n") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
