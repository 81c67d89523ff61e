package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// pluginProbeTemplate runs the test action, which succeeds or fails as its parameters say.
const pluginProbeTemplate = `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata: {name: plugin-probe}
spec:
  image: kubernaut-actions
  args: ["test-action"]
  targetKinds: [Deployment]
  parameters:
    type: object
    additionalProperties: false
    properties:
      output: {type: string}
      fail: {type: boolean}
  retryPolicy: {idempotent: true}
`

// pluginRun is one run of the kubectl plugin.
type pluginRun struct {
	stdout, stderr string
	code           int
}

// pluginCommand is the plugin built by make build, run as a user runs it: against the suite's
// cluster through kubeconfig, its discovery cache in a folder of the spec's own.
func pluginCommand(ctx context.Context, kubeconfig string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	bin := filepath.Join(e2eutil.BinDir(), "kubectl-kubernaut")
	_, err := os.Stat(bin)
	Expect(err).NotTo(HaveOccurred(), "the plugin is not built (run make build)")
	args = append([]string{"--kubeconfig", kubeconfig, "--cache-dir", GinkgoT().TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// kubernaut runs the plugin as the cluster's administrator (or whom --as names) and returns what
// it printed and its exit code.
func kubernaut(ctx context.Context, args ...string) pluginRun {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd, stdout, stderr := pluginCommand(ctx, cluster.Kubeconfig, args...)
	return finish(cmd.Run(), stdout, stderr)
}

func finish(err error, stdout, stderr *bytes.Buffer) pluginRun {
	run := pluginRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.code = exit.ExitCode()
	case err != nil:
		Fail("running the plugin: " + err.Error())
	}
	GinkgoWriter.Printf("exit %d\nstdout:\n%s\nstderr:\n%s\n", run.code, run.stdout, run.stderr)
	return run
}

// createdName is the execution's name from run's "kubernetesexecution NS/NAME created" line.
func createdName(ns, stdout string) string {
	m := regexp.MustCompile(`(?m)^kubernetesexecution ` + regexp.QuoteMeta(ns) + `/(\S+) created$`).FindStringSubmatch(stdout)
	Expect(m).NotTo(BeNil(), "run prints the execution it created: %q", stdout)
	return m[1]
}

// resultSection is what run --wait prints after following the execution: the result as result
// prints it.
func resultSection(stdout string) string {
	_, after, found := strings.Cut(stdout, "\nName:")
	Expect(found).To(BeTrue(), "run --wait prints the result: %q", stdout)
	return "Name:" + after
}

func execution(ctx context.Context, ns, name string) *v1alpha1.KubernetesExecution {
	obj := &v1alpha1.KubernetesExecution{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

func waitPhase(ctx context.Context, ns, name string, phase v1alpha1.ExecutionPhase) *v1alpha1.KubernetesExecution {
	obj := &v1alpha1.KubernetesExecution{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
		g.Expect(obj.Status.Phase).To(Equal(phase), "conditions %v", obj.Status.Conditions)
	}, 90*time.Second).Should(Succeed())
	return obj
}

func replicas(ctx context.Context, ns, name string) int32 {
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
	return *d.Spec.Replicas
}

var _ = Describe("The kubectl plugin", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = cluster.Namespace(ctx, "plugin", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, newDeployment(ns, "web", "registry.invalid/web:1", 1))).To(Succeed())
	})

	It("runs an action with --wait to its end and prints the result, which result prints again", func(ctx SpecContext) {
		run := kubernaut(ctx, "run", "scale-deployment", "-n", ns, "--target", "deploy/web", "--param", "replicas=2", "--wait")
		Expect(run.code).To(Equal(0), run.stderr)
		name := createdName(ns, run.stdout)
		Expect(name).To(HavePrefix("scale-deployment-"))
		Expect(run.stdout).To(MatchRegexp(`(?m)^Running \(`), "each phase change is printed")
		Expect(run.stdout).To(MatchRegexp(`(?m)^Completed \(Succeeded\)`))
		Expect(run.stdout).To(ContainSubstring("\nPhase:         Completed\n"))
		Expect(run.stdout).To(ContainSubstring("\nParameters:    {\"replicas\":2}\n"), "replicas=2 is sent as a number")
		Expect(run.stdout).To(ContainSubstring("\nTarget:        Deployment " + ns + "/web\n"))
		Expect(run.stdout).To(ContainSubstring("\nRequester:     local-admin\n"))
		Expect(run.stdout).To(ContainSubstring("\n  Success:     true\n"))
		Expect(run.stdout).To(MatchRegexp(`\n  Data:\n    \{\n`), "the data, indented")
		Expect(run.stdout).To(MatchRegexp(`(?m)^  #  JOB +STARTED +ENDED +DURATION +EXIT +REASON +MESSAGE$`))
		Expect(run.stdout).To(MatchRegexp(`(?m)^  1  ` + regexp.QuoteMeta(name) + `\S* .* 0 +Succeeded `))
		Expect(replicas(ctx, ns, "web")).To(BeEquivalentTo(2))

		result := kubernaut(ctx, "result", name, "-n", ns)
		Expect(result.code).To(Equal(0), result.stderr)
		Expect(result.stdout).To(Equal(resultSection(run.stdout)))

		asJSON := kubernaut(ctx, "result", name, "-n", ns, "-o", "json")
		Expect(asJSON.code).To(Equal(0), asJSON.stderr)
		status := v1alpha1.KubernetesExecutionStatus{}
		Expect(json.Unmarshal([]byte(asJSON.stdout), &status)).To(Succeed())
		Expect(status.Phase).To(Equal(v1alpha1.PhaseCompleted))
		Expect(status.Attempts).To(HaveLen(1))

		// approve names the phase of an execution that never waited for approval.
		approve := kubernaut(ctx, "approve", name, "-n", ns)
		Expect(approve.code).To(Equal(1))
		Expect(approve.stderr).To(Equal("error: kubernetesexecution " + ns + "/" + name + " does not need approval: its phase is Completed\n"))
	})

	It("leaves a cluster-scoped target's namespace empty, asking the API server the kind's scope", func(ctx SpecContext) {
		run := kubernaut(ctx, "run", "cordon-node", "-n", ns, "--target", "nodes/spare-node", "--dry-run", "--name", "cordon-dry", "--wait")
		Expect(run.code).To(Equal(0), run.stderr)
		Expect(run.stdout).To(HavePrefix("kubernetesexecution " + ns + "/cordon-dry created\n"))
		Expect(run.stdout).To(ContainSubstring("\nTarget:        Node spare-node\n"))
		Expect(run.stdout).To(ContainSubstring("\nDry run:       yes"))
		obj := execution(ctx, ns, "cordon-dry")
		Expect(obj.Spec.Action.Target).To(Equal(v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "spare-node"}))
		Expect(obj.Spec.DryRun).To(BeTrue())
	})

	It("exits 1 when the execution fails, and 2 on a usage error", func(ctx SpecContext) {
		out, err := e2eutil.Kubectl(cluster.Kubeconfig, pluginProbeTemplate, "apply", "-f", "-")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			tpl := &v1alpha1.ActionTemplate{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "plugin-probe"}, tpl)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())

		run := kubernaut(ctx, "run", "plugin-probe", "-n", ns, "--target", "Deployment/web",
			"--param", "fail=true", "--param", "output=broken on purpose", "--max-retries", "0", "--wait")
		Expect(run.code).To(Equal(1), run.stderr)
		name := createdName(ns, run.stdout)
		Expect(run.stdout).To(MatchRegexp(`(?m)^Failed \(`))
		Expect(run.stdout).To(ContainSubstring("\nPhase:         Failed\n"))
		Expect(run.stdout).To(ContainSubstring("\n  Success:     false\n"))
		Expect(run.stderr).To(HavePrefix("error: kubernetesexecution " + ns + "/" + name + " ended Failed ("))
		obj := execution(ctx, ns, name)
		Expect(obj.Spec.MaxRetries).To(HaveValue(BeEquivalentTo(0)))
		Expect(obj.Status.Attempts).To(HaveLen(1))

		usage := kubernaut(ctx, "run", "plugin-probe", "-n", ns, "--target", "web")
		Expect(usage.code).To(Equal(2))
		Expect(usage.stderr).To(ContainSubstring(`--target "web": expected KIND/NAME`))
		unknown := kubernaut(ctx, "run", "plugin-probe", "-n", ns, "--target", "widget/web")
		Expect(unknown.code).To(Equal(2))
		Expect(unknown.stderr).To(ContainSubstring(`--target: the API server has no kind or resource "widget"`))
	})

	It("prints every field a rejected run has wrong, as admission names them, and creates nothing", func(ctx SpecContext) {
		run := kubernaut(ctx, "run", "scale-deployment", "-n", ns, "--target", "deploy/web",
			"--param", "replicas=-1", "--param", "surge=1", "--timeout", "99h", "--wait")
		Expect(run.code).To(Equal(1))
		Expect(run.stdout).To(BeEmpty())
		Expect(run.stderr).To(HavePrefix("The KubernetesExecution is invalid:\n* "))
		Expect(run.stderr).To(MatchRegexp(`(?m)^\* spec\.action\.parameters\.replicas: Invalid value: -1: `))
		Expect(run.stderr).To(MatchRegexp(`(?m)^\* spec\.action\.parameters\.surge: `))
		Expect(run.stderr).To(MatchRegexp(`(?m)^\* spec\.timeout: Invalid value: "99h0m0s": .*maxTimeout`))
		list := &v1alpha1.KubernetesExecutionList{}
		Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(BeEmpty())
	})

	Context("deciding on an execution that waits for approval", func() {
		// bob may approve in the spec's namespace; carol may write the status but not approve.
		BeforeEach(func(ctx SpecContext) {
			read := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"get", "list", "watch"}}
			writeStatus := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions/status"}, Verbs: []string{"get", "patch", "update"}}
			approve := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"kubernetesexecutions"}, Verbs: []string{"approve"}}
			Expect(e2eutil.GrantUser(ctx, k8s, "bob", ns, read, writeStatus, approve)).To(Succeed())
			Expect(e2eutil.GrantUser(ctx, k8s, "carol", ns, read, writeStatus)).To(Succeed())
		})

		runAwaiting := func(ctx context.Context) string {
			run := kubernaut(ctx, "run", "scale-deployment", "-n", ns, "--target", "deploy/web", "--param", "replicas=3", "--approval")
			Expect(run.code).To(Equal(0), run.stderr)
			name := createdName(ns, run.stdout)
			obj := waitPhase(ctx, ns, name, v1alpha1.PhaseAwaitingApproval)
			Expect(meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionApproved)).To(
				HaveField("Status", BeEquivalentTo("Unknown")))
			return name
		}

		It("approve: not by the requester, not without the approve verb; by an approver, recorded, once", func(ctx SpecContext) {
			name := runAwaiting(ctx)
			waiting := kubernaut(ctx, "result", name, "-n", ns)
			Expect(waiting.stdout).To(ContainSubstring("\nApproval:      awaiting a decision (kubectl kubernaut approve|deny " + name + " -n " + ns + ")\n"))
			Expect(waiting.stdout).To(ContainSubstring("\nAttempts:      none\n"))

			own := kubernaut(ctx, "approve", name, "-n", ns)
			Expect(own.code).To(Equal(1))
			Expect(own.stderr).To(HavePrefix("Error from server (Forbidden): "), "the requester may not approve their own execution")
			notApprover := kubernaut(ctx, "approve", name, "-n", ns, "--as", "carol")
			Expect(notApprover.code).To(Equal(1))
			Expect(notApprover.stderr).To(HavePrefix("Error from server (Forbidden): "), "carol lacks the approve verb")
			Expect(execution(ctx, ns, name).Status.Phase).To(Equal(v1alpha1.PhaseAwaitingApproval))

			approved := kubernaut(ctx, "approve", name, "-n", ns, "--as", "bob", "--reason", "change CHG-1")
			Expect(approved.code).To(Equal(0), approved.stderr)
			Expect(approved.stdout).To(Equal("kubernetesexecution " + ns + "/" + name + " approved\n"))
			obj := waitPhase(ctx, ns, name, v1alpha1.PhaseCompleted)
			Expect(obj.Status.Approval).NotTo(BeNil())
			Expect(obj.Status.Approval.Decision).To(Equal(v1alpha1.DecisionApproved))
			Expect(obj.Status.Approval.Approver.Username).To(Equal("bob"))
			Expect(obj.Status.Approval.Reason).To(Equal("change CHG-1"))
			Expect(replicas(ctx, ns, "web")).To(BeEquivalentTo(3))

			result := kubernaut(ctx, "result", name, "-n", ns)
			Expect(result.stdout).To(MatchRegexp(`\nApproval: +Approved by bob at \S+: change CHG-1\n`))
			again := kubernaut(ctx, "approve", name, "-n", ns, "--as", "bob")
			Expect(again.code).To(Equal(1))
			Expect(again.stderr).To(HavePrefix("error: kubernetesexecution " + ns + "/" + name + " was already approved by bob at "))
		})

		It("deny: needs a reason, fails the execution with it, and run --wait follows it to Failed", func(ctx SpecContext) {
			// run --wait follows the execution through its wait for approval.
			follow, stdout, stderr := pluginCommand(ctx, cluster.Kubeconfig, "run", "scale-deployment", "-n", ns, "--name", "held",
				"--target", "deploy/web", "--param", "replicas=3", "--approval", "--wait")
			Expect(follow.Start()).To(Succeed())
			waitPhase(ctx, ns, "held", v1alpha1.PhaseAwaitingApproval)

			noReason := kubernaut(ctx, "deny", "held", "-n", ns, "--as", "bob")
			Expect(noReason.code).To(Equal(2))
			Expect(noReason.stderr).To(ContainSubstring(`required flag(s) "reason" not set`))
			denied := kubernaut(ctx, "deny", "held", "-n", ns, "--as", "bob", "--reason", "not during the freeze")
			Expect(denied.code).To(Equal(0), denied.stderr)
			Expect(denied.stdout).To(Equal("kubernetesexecution " + ns + "/held denied\n"))

			done := make(chan error, 1)
			go func() { done <- follow.Wait() }()
			var err error
			Eventually(done, 90*time.Second).Should(Receive(&err))
			run := finish(err, stdout, stderr)
			Expect(run.code).To(Equal(1))
			Expect(run.stdout).To(MatchRegexp(`(?m)^AwaitingApproval \(AwaitingApproval\)`))
			Expect(run.stdout).To(MatchRegexp(`(?m)^Failed \(Denied\): .*not during the freeze`))
			Expect(run.stdout).To(MatchRegexp(`\nApproval: +Denied by bob at \S+: not during the freeze\n`))
			Expect(run.stdout).To(ContainSubstring("\nAttempts:      none\n"), "nothing ran")
			Expect(run.stderr).To(Equal("error: kubernetesexecution " + ns + "/held ended Failed (Denied)\n"))
			Expect(replicas(ctx, ns, "web")).To(BeEquivalentTo(1))
		})

		It("the plain-kubectl equivalent in docs/kubectl-plugin.md approves and denies", func(ctx SpecContext) {
			script := docScript()
			bobKubeconfig := impersonating("bob")
			for _, c := range []struct {
				status   string
				phase    v1alpha1.ExecutionPhase
				decision v1alpha1.ApprovalDecision
			}{{"True", v1alpha1.PhaseCompleted, v1alpha1.DecisionApproved}, {"False", v1alpha1.PhaseFailed, v1alpha1.DecisionDenied}} {
				name := runAwaiting(ctx)
				found, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "get", "kexec", name, "-n", ns, "-o",
					`go-template={{.metadata.generation}} {{range $i, $c := .status.conditions}}{{if eq $c.type "Approved"}}{{$i}}{{end}}{{end}}`)
				Expect(err).NotTo(HaveOccurred(), found)
				GinkgoWriter.Printf("generation and index of Approved: %q\n", found)
				cmd := exec.CommandContext(ctx, "bash", "-ec", script+"\nkexec_decide \"$1\" \"$2\" \"$3\" \"$4\"", "decide",
					name, ns, c.status, `said "yes", then \no`)
				cmd.Env = append(os.Environ(), "KUBECONFIG="+bobKubeconfig)
				out, err := cmd.CombinedOutput()
				Expect(err).NotTo(HaveOccurred(), string(out))
				GinkgoWriter.Printf("kexec_decide %s %s %s: %s", name, ns, c.status, out)
				Expect(string(out)).To(Equal("kubernetesexecution.kubernetesexecution.kubernaut.io/" + name + " patched\n"))
				obj := waitPhase(ctx, ns, name, c.phase)
				Expect(obj.Status.Approval).NotTo(BeNil())
				Expect(obj.Status.Approval.Decision).To(Equal(c.decision))
				Expect(obj.Status.Approval.Approver.Username).To(Equal("bob"))
				Expect(obj.Status.Approval.Reason).To(Equal(`said "yes", then \no`), "the message survives quoting")
			}
		})
	})
})

// docScript is the shell function docs/kubectl-plugin.md gives as the plain-kubectl way to
// approve or deny: the fenced block after the line "<!-- kexec_decide -->".
func docScript() string {
	doc, err := os.ReadFile(filepath.Join(e2eutil.RepoRoot(), "docs", "kubectl-plugin.md"))
	Expect(err).NotTo(HaveOccurred())
	_, after, found := strings.Cut(string(doc), "<!-- kexec_decide -->\n```sh\n")
	Expect(found).To(BeTrue(), "docs/kubectl-plugin.md has the kexec_decide block")
	script, _, found := strings.Cut(after, "\n```")
	Expect(found).To(BeTrue())
	return script
}

// impersonating writes a kubeconfig that acts as user through the administrator's credentials,
// as --as does, for plain kubectl run by a script.
func impersonating(user string) string {
	cfg, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = user
	}
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig-"+user)
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}
