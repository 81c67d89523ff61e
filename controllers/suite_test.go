package controllers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
	"github.com/kubernaut/kubernaut-executor/webhooks"
)

// The backoff the suite's manager uses: long enough that real time never reaches it during a
// test, so only a step of the test clock starts a retry.
var testBackoff = controllers.Backoff{Base: 30 * time.Second, Max: 10 * time.Minute}

// ceilingFragment is what the suite's test actions may be granted.
var ceilingFragment = []rbacv1.PolicyRule{
	{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
}

var (
	cluster *localcluster.Cluster
	// k8s is the administrator's client. It records the admission of the executions it creates
	// as the executor's defaulting webhook would (this suite runs the controllers without the
	// webhooks; the API server's admission policy still checks the record).
	k8s client.Client
	// rawK8s is the administrator's client without that: its executions carry what they carry.
	rawK8s    client.Client
	testClock = &e2eutil.Clock{}
	scheme    = runtime.NewScheme()
	// managerConfig is the manager's own identity: its ServiceAccount, with the generated
	// ClusterRole and the ceiling, so that RBAC treats it as it would in a cluster.
	managerConfig *rest.Config
	stopMgr       context.CancelFunc
	mgrDone       chan struct{}
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers suite (local control plane)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)

	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())

	var err error
	cluster, err = e2eutil.StartCluster(ctx, "controllers")
	Expect(err).NotTo(HaveOccurred())
	rawK8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	k8s, err = recordingAdmission(ctx, cluster.Config)
	Expect(err).NotTo(HaveOccurred())

	out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "-f", filepath.Join(e2eutil.RepoRoot(), "config", "rbac"))
	Expect(err).NotTo(HaveOccurred(), out)
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-test-actions", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
		Rules:      ceilingFragment,
	})).To(Succeed())
	Eventually(func(g Gomega) {
		ceiling := &rbacv1.ClusterRole{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: controllers.DefaultCeilingName}, ceiling)).To(Succeed())
		g.Expect(grants.Uncovered(ceiling.Rules, ceilingFragment)).To(BeEmpty(), "kube-controller-manager aggregates the ceiling")
	}).Should(Succeed())
	managerConfig, err = e2eutil.TokenConfig(ctx, cluster.Config, "kubernaut-system", "kubernaut-executor")
	Expect(err).NotTo(HaveOccurred())
	startManager()
}, NodeTimeout(3*time.Minute))

// recordingAdmission returns a client for cfg's identity that records, on each execution it
// creates, that identity and the template's current generation, as the defaulting webhook does.
func recordingAdmission(ctx context.Context, cfg *rest.Config) (client.Client, error) {
	base, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	user := webhooks.UserInfoOf(review.Status.UserInfo)
	return interceptor.NewClient(base, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if exec, ok := obj.(*v1alpha1.KubernetesExecution); ok && exec.Spec.Admission == nil {
				exec.Spec.Admission = &v1alpha1.AdmissionRecord{Requester: user}
				tpl := &v1alpha1.ActionTemplate{}
				if err := rawK8s.Get(ctx, client.ObjectKey{Name: exec.Spec.Action.Type}, tpl); err == nil {
					exec.Spec.Admission.TemplateUID, exec.Spec.Admission.TemplateGeneration = tpl.UID, tpl.Generation
				}
			}
			return c.Create(ctx, obj, opts...)
		},
	}), nil
}

// startManager starts the executor's manager as its own ServiceAccount, built as the shipped
// binary builds it, without the webhooks (the suite's client records admission instead).
func startManager() {
	mgrCtx, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(mgrCtx, managerConfig, manager.Options{
		Namespace: e2eutil.Namespace,
		Executor: controllers.ExecutorOptions{
			Backoff:      testBackoff,
			JobTTL:       time.Hour,
			ActionImages: map[string]string{"kubernaut-actions": localcluster.ActionsImage + ":test"},
		},
		Clock: testClock,
		// Registered when it appears (the chart's clusters.secrets): see clusters_test.go.
		ClusterSecrets: map[string]string{preregisteredSecret: "pre"},
		// Short, so the sweep spec sees a sweep soon; a sweep removes nothing of a live execution.
		SweepInterval: 2 * time.Second,
		// The suite restarts the manager in one process; controller names repeat.
		SkipNameValidation: true,
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, opts)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, writes.funcs()), nil
		},
	})
	if err != nil {
		cancel()
	}
	Expect(err).NotTo(HaveOccurred())
	stopMgr, mgrDone = cancel, make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
}

// writeLog records every write the manager makes, to count what an execution costs.
type writeLog struct {
	mu      sync.Mutex
	entries []write
}

// write is one write: its verb, the object's kind (with "/<subresource>" for a write of a
// subresource, such as "KubernetesExecution/status"), namespace and name.
type write struct{ Verb, Kind, Namespace, Name string }

var writes = &writeLog{}

func (l *writeLog) record(verb string, obj client.Object) { l.recordSub(verb, obj, "") }

// recordSub records a write of obj's subresource, or of obj itself when subresource is "".
func (l *writeLog) recordSub(verb string, obj client.Object, subresource string) {
	gvk, _ := apiutil.GVKForObject(obj, scheme)
	w := write{Verb: verb, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	if subresource != "" {
		w.Kind += "/" + subresource
	}
	if sar, ok := obj.(*authorizationv1.SubjectAccessReview); ok && sar.Spec.ResourceAttributes != nil {
		// A review names no object of its own: record what it asks about.
		a := sar.Spec.ResourceAttributes
		w.Namespace, w.Name = a.Namespace, a.Verb+" "+a.Resource+" "+a.Name
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, w)
}

// matching returns the writes for which keep is true.
func (l *writeLog) matching(keep func(write) bool) []write {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []write
	for _, w := range l.entries {
		if keep(w) {
			out = append(out, w)
		}
	}
	return out
}

func (l *writeLog) funcs() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			err := c.Create(ctx, obj, opts...)
			l.record("create", obj)
			return err
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			// Recorded once it is stored: a write refused for a stale copy is tried again.
			err := c.Update(ctx, obj, opts...)
			if err == nil {
				l.record("update", obj)
			}
			return err
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			// Recorded once it is stored: a write refused for a stale copy is tried again.
			err := c.Patch(ctx, obj, patch, opts...)
			if err == nil {
				l.record("patch", obj)
			}
			return err
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			// Recorded once it is stored: a write refused for a stale copy is tried again.
			err := c.Delete(ctx, obj, opts...)
			if err == nil {
				l.record("delete", obj)
			}
			return err
		},
		DeleteAllOf: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteAllOfOption) error {
			err := c.DeleteAllOf(ctx, obj, opts...)
			l.record("deletecollection", obj)
			return err
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			err := c.Apply(ctx, obj, opts...)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.entries = append(l.entries, write{Verb: "apply", Kind: fmt.Sprintf("%T", obj)})
			return err
		},
		// Writes of subresources (an execution's status): recorded once stored, as above.
		SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			err := c.SubResource(sub).Create(ctx, obj, subObj, opts...)
			if err == nil {
				l.recordSub("create", obj, sub)
			}
			return err
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			err := c.SubResource(sub).Update(ctx, obj, opts...)
			if err == nil {
				l.recordSub("update", obj, sub)
			}
			return err
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			err := c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			if err == nil {
				l.recordSub("patch", obj, sub)
			}
			return err
		},
	}
}

// stopManager stops the manager and waits until it has stopped.
func stopManager() {
	stopMgr()
	<-mgrDone
}

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopManager()
	}
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
})
