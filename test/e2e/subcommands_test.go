package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// actionsImage is the image name by which templates run the project's action binary.
const actionsImage = "kubernaut-actions"

// TestTemplatesNameSubcommands checks that every predefined template that runs the action
// binary names, as its first argument, a subcommand the binary (built by make build) has. It
// runs the binary with each name and nothing else in its environment (no target, no cluster to
// reach), so an action it knows fails on its input, and only an unknown name fails as unknown.
func TestTemplatesNameSubcommands(t *testing.T) {
	bin := filepath.Join(e2eutil.BinDir(), "kubernaut-actions")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the action binary is not built (run make build): %v", err)
	}
	run := func(name string) string {
		t.Helper()
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, name)
		// No kubeconfig, no service account, a dry run: the action cannot reach a cluster.
		message := filepath.Join(dir, "termination-log")
		cmd.Env, cmd.Dir = []string{"TERMINATION_MESSAGE_PATH=" + message, "HOME=" + dir, v1alpha1.EnvDryRun + "=true"}, dir
		_ = cmd.Run() // every run fails: without a cluster no action can succeed
		raw, err := os.ReadFile(message)
		if err != nil {
			t.Fatalf("%s: no result: %v", name, err)
		}
		// The result's documented shape; only its error matters here.
		var res struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("%s: result %q: %v", name, raw, err)
		}
		return res.Error
	}
	if msg := run("no-such-action"); !strings.Contains(msg, "unknown action") {
		t.Fatalf("an unknown subcommand fails with %q; this test expects it to say \"unknown action\"", msg)
	}
	for _, name := range e2eutil.PredefinedActions() {
		raw, err := os.ReadFile(filepath.Join(e2eutil.RepoRoot(), "templates", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		tpl := &v1alpha1.ActionTemplate{}
		if err := yaml.Unmarshal(raw, tpl); err != nil {
			t.Fatalf("templates/%s.yaml: %v", name, err)
		}
		if tpl.Spec.Image != actionsImage {
			continue
		}
		if len(tpl.Spec.Args) == 0 {
			t.Errorf("templates/%s.yaml runs %s without a subcommand", name, actionsImage)
			continue
		}
		if msg := run(tpl.Spec.Args[0]); strings.Contains(msg, "unknown action") {
			t.Errorf("templates/%s.yaml runs %s %s, which has no such subcommand: %s", name, actionsImage, tpl.Spec.Args[0], msg)
		}
	}
}
