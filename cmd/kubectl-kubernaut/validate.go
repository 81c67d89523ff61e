package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// validateOptions are validate's flags.
type validateOptions struct {
	files     []string
	recursive bool
	ceilings  []string
}

func newValidateCommand(g *globals) *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR [-f FILE|DIR ...] [-R] [--ceiling FILE ...]",
		Short: "Check ActionTemplates offline, as the executor's admission webhook checks them",
		Long: `Check ActionTemplates offline with the checks the executor's admission webhook runs on them:
the parameter schema uses only local references and compiles; command, args and env render
with the allowed functions, within their limits, with sample parameters drawn from the schema
(defaults, else examples, else a value of each property's type); env does not override the
variables the executor sets; the RBAC rules hold no wildcard, no escalate, bind or impersonate,
no nonResourceURLs; defaultTimeout does not exceed maxTimeout; and, with --ceiling, the rules
fit under the RBAC ceiling.

-f takes a file, a folder (its *.yaml files; with -R, its subfolders' too) or - for standard
input, and may be repeated. A file may hold several YAML documents; those that are not ActionTemplates are
skipped with a note.

--ceiling FILE reads ClusterRoles (one or several YAML documents; other kinds are ignored) and
takes the union of their rules as the ceiling, as the cluster's aggregated ceiling is the union
of its fragments. It may be repeated: the predefined actions' fragments and your own, say.
Without it, the rules are not checked against a ceiling, and a note says so.

Before those, it makes the checks the API server makes before the webhook sees a template: the
name, the CRD's schema (required fields, patterns, enums, bounds, list sizes: targetKinds not
empty, say) and no field the schema does not declare.

Each template prints "NAME: ok" or one line per problem, "FILE: NAME: FIELD: MESSAGE", with the
webhook's own message. The command exits 0 when every template passes, 1 when any has a
problem, 2 when a file cannot be read or the command line is wrong.`,
		Example: `  # Check a template against the ceiling the chart installs for the predefined actions.
  kubectl kubernaut validate -f my-action.yaml --ceiling ceiling.yaml

  # Check every template in a folder, without a ceiling.
  kubectl kubernaut validate -f templates/

  # Check a folder and its subfolders against two sets of ceiling fragments.
  kubectl kubernaut validate -R -f actions/ --ceiling ceiling.yaml --ceiling my-fragments.yaml`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, "A file or folder of ActionTemplates, or - for standard input. Repeatable.")
	cmd.Flags().BoolVarP(&o.recursive, "recursive", "R", false, "Read the *.yaml files of the subfolders of each folder -f names, too.")
	cmd.Flags().StringArrayVar(&o.ceilings, "ceiling", nil, "A file of ClusterRoles whose rules, together, are the RBAC ceiling. Repeatable: the rules of every file count.")
	_ = cmd.MarkFlagRequired("filename")
	cmd.RunE = func(*cobra.Command, []string) error {
		return o.run(g.streams.In, g.streams.Out, g.streams.ErrOut)
	}
	return cmd
}

// source is one file's content, named as the output names it.
type source struct {
	name string
	data []byte
}

func (o *validateOptions) run(in io.Reader, out, errOut io.Writer) error {
	var ceiling *validation.Ceiling
	if len(o.ceilings) > 0 {
		ceiling = &validation.Ceiling{Name: strings.Join(o.ceilings, ", ")}
		for _, path := range o.ceilings {
			rules, err := readCeiling(path)
			if err != nil {
				return err
			}
			ceiling.Rules = append(ceiling.Rules, rules...)
		}
	} else {
		_, _ = fmt.Fprintln(errOut, "note: no --ceiling: the RBAC rules are not checked against a ceiling")
	}
	sources, err := readSources(o.files, o.recursive, in)
	if err != nil {
		return err
	}
	var templates, failed, problems int
	for _, src := range sources {
		docs, err := splitDocuments(src.data)
		if err != nil {
			// What was read before the YAML broke is still checked.
			problems++
			_, _ = fmt.Fprintf(out, "%s: %v\n", src.name, err)
		}
		for _, doc := range docs {
			d, err := decodeTemplate(doc.data, doc.index)
			switch {
			case err != nil:
				templates++
				failed++
				problems++
				_, _ = fmt.Fprintf(out, "%s: %s: %v\n", src.name, d.name, err)
				continue
			case d.skip != "":
				_, _ = fmt.Fprintf(errOut, "note: %s: document %d: skipped %s, not an ActionTemplate\n", src.name, doc.index, d.skip)
				continue
			}
			templates++
			errs := d.problems
			if d.tpl != nil {
				errs = append(errs, validation.AdmitTemplate(d.tpl, ceiling)...)
			}
			if len(errs) == 0 {
				_, _ = fmt.Fprintf(out, "%s: ok\n", d.name)
				continue
			}
			failed++
			problems += len(errs)
			for _, e := range errs {
				_, _ = fmt.Fprintf(out, "%s: %s: %s\n", src.name, d.name, e.Error())
			}
		}
	}
	if templates == 0 && problems == 0 {
		return usageErrorf("no ActionTemplate in %s", strings.Join(o.files, ", "))
	}
	if problems > 0 {
		return exitError{code: exitFailed, msg: fmt.Sprintf("%s; %d of %d ActionTemplates passed", plural(problems, "problem"), templates-failed, templates)}
	}
	return nil
}

// readSources reads each -f: a file, every *.yaml file of a folder (and, with recursive, of
// its subfolders) in name order, or standard input. A file that cannot be read is a usage
// error: nothing was checked.
func readSources(paths []string, recursive bool, in io.Reader) ([]source, error) {
	var out []source
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(in)
			if err != nil {
				return nil, usageErrorf("reading standard input: %v", err)
			}
			out = append(out, source{name: "-", data: data})
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		files := []string{p}
		if info.IsDir() {
			if files, err = yamlFiles(p, recursive); err != nil {
				return nil, usageErrorf("%v", err)
			}
			if len(files) == 0 {
				return nil, usageErrorf("folder %s holds no *.yaml file", p)
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f) //nolint:gosec // the user names the files to check
			if err != nil {
				return nil, usageErrorf("%v", err)
			}
			out = append(out, source{name: f, data: data})
		}
	}
	return out, nil
}

// yamlFiles lists the *.yaml files of dir, and of its subfolders when recursive, in name order.
func yamlFiles(dir string, recursive bool) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != dir && !recursive:
			return fs.SkipDir
		case !d.IsDir() && filepath.Ext(path) == ".yaml":
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// document is one YAML document of a file; index counts from 1, as a person counts them.
type document struct {
	index int
	data  []byte
}

// splitDocuments returns a file's non-empty YAML documents, and an error naming the document
// that does not parse, if one does not.
func splitDocuments(data []byte) ([]document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, fmt.Errorf("document %d: %w", i, err)
		}
		var probe any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return docs, fmt.Errorf("document %d does not parse: %w", i, err)
		}
		if probe == nil {
			// Only comments, or the empty document before a leading ---.
			i--
			continue
		}
		docs = append(docs, document{index: i, data: doc})
	}
}

var templateGVK = v1alpha1.GroupVersion.WithKind("ActionTemplate")

// decoded is one document as decodeTemplate read it.
type decoded struct {
	// skip, when set, describes a document of another kind, which is not checked.
	skip string
	// name is the template's name, or its position in the file when it has none.
	name string
	// tpl is the template, nil when the document does not decode into one.
	tpl *v1alpha1.ActionTemplate
	// problems are what the API server refuses before the webhook sees the template.
	problems field.ErrorList
}

// decodeTemplate decodes one document and returns what the API server refuses before the
// webhook sees it: breaches of the CRD's schema, and a field the ActionTemplate does not
// declare or one given twice (kubectl apply's strict field validation refuses those; most often
// it is a misspelling whose value would otherwise be dropped without a word). The template is
// returned even so, so that the webhook's checks run too and the author sees every problem at
// once. An error means the document is no YAML object, or breaks no rule of the schema and still
// does not decode.
func decodeTemplate(doc []byte, index int) (*decoded, error) {
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	d := &decoded{name: fmt.Sprintf("(document %d, no name)", index)}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return d, fmt.Errorf("does not decode: %w", err)
	}
	if meta.Metadata.Name != "" {
		d.name = meta.Metadata.Name
	}
	if gvk := schema.FromAPIVersionAndKind(meta.APIVersion, meta.Kind); gvk != templateGVK {
		d.skip = meta.Kind
		if d.skip == "" {
			d.skip = "a document without kind"
		}
		if meta.Metadata.Name != "" {
			d.skip += " " + meta.Metadata.Name
		}
		return d, nil
	}
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return d, fmt.Errorf("does not decode: %w", err)
	}
	if d.problems, err = schemaErrors(data); err != nil {
		return d, err
	}
	tpl := &v1alpha1.ActionTemplate{}
	strict, err := sigsjson.UnmarshalStrict(data, tpl)
	if err != nil {
		// A value of the wrong type: the schema's error says where, in the API server's words.
		if len(d.problems) > 0 {
			return d, nil
		}
		return d, fmt.Errorf("does not decode as an ActionTemplate: %w", err)
	}
	d.tpl = tpl
	for _, e := range strict {
		p, ok := e.(interface{ FieldPath() string })
		switch {
		case !ok:
			d.problems = append(d.problems, field.InternalError(nil, e))
		case strings.HasPrefix(e.Error(), "duplicate field"):
			d.problems = append(d.problems, field.Forbidden(field.NewPath(p.FieldPath()), "set more than once; only the last value would be kept"))
		default:
			d.problems = append(d.problems, field.Forbidden(field.NewPath(p.FieldPath()), "field not declared in the ActionTemplate schema"))
		}
	}
	return d, nil
}

// readCeiling returns the rules of the ClusterRoles of a file: together, they are the ceiling,
// as the cluster's ceiling aggregates its fragments. Documents of other kinds (a
// ClusterRoleBinding next to the ceiling, say) are ignored; a file without any ClusterRole is a
// usage error, as it would silently refuse every rule.
func readCeiling(path string) ([]rbacv1.PolicyRule, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the user names the ceiling file
	if err != nil {
		return nil, usageErrorf("--ceiling: %v", err)
	}
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, usageErrorf("--ceiling %s: %v", path, err)
	}
	var rules []rbacv1.PolicyRule
	roles := 0
	want := rbacv1.SchemeGroupVersion.WithKind("ClusterRole")
	for _, doc := range docs {
		role := &rbacv1.ClusterRole{}
		if err := yaml.Unmarshal(doc.data, role); err != nil {
			return nil, usageErrorf("--ceiling %s: document %d: %v", path, doc.index, err)
		}
		if role.GroupVersionKind() != want {
			continue
		}
		roles++
		rules = append(rules, role.Rules...)
	}
	if roles == 0 {
		return nil, usageErrorf("--ceiling %s holds no ClusterRole (rbac.authorization.k8s.io/v1)", path)
	}
	return rules, nil
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
