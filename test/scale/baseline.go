package scale

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// baselineMode is what sets one baseline apart from another.
type baselineMode struct {
	// namespace is where the baseline writes; it creates it first.
	namespace string
	// runJobs makes the Jobs unsuspended, so that the Job controller makes each one's pod, the
	// scheduler binds it and kwok finishes it, as it does an action's pod; each unit then makes
	// its updates and deletes (the executor's revocation) once its Jobs have completed, and
	// its RoleBindings are owned by its Role, as the executor's are (the garbage collector
	// deletes them with the Role). Without it the Jobs are suspended and no pod follows.
	runJobs bool
}

// baseline makes, with a bare client-go clientset and no rate limit, the writes that units
// executions cost the executor (perExecution: writes per execution by "verb resource", as the
// API server counted them), at most workers units writing at once, and returns how many writes
// it made and the time from the first write to the last. Each write has a stand-in of the same
// kind where one exists: ServiceAccounts, Roles, RoleBindings, Jobs, Events and
// SubjectAccessReviews are made as such; the writes to the KubernetesExecution (its status, its
// finalizers) go to a ConfigMap per execution, which the baseline creates first and counts. A
// ConfigMap is stored as protobuf and an execution as JSON, so the baseline's writes are, if
// anything, cheaper than the executor's: the floor it sets is a high one.
//
// A unit waiting for its Jobs (mode.runJobs) gives up its place to another: as with the
// executor, whose executions all run at once, how many units are under way is bounded by the
// cluster's pace, not by workers.
func baseline(ctx context.Context, cfg *rest.Config, perExecution map[string]float64, units, workers int, mode baselineMode) (int64, time.Duration, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, 0, err
	}
	ns := mode.namespace
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, 0, err
	}
	// The first unit to fail cancels the others, with its error as the cause.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var jobs *jobWatch
	if mode.runJobs {
		if jobs, err = watchJobs(ctx, cs, ns); err != nil {
			return 0, 0, err
		}
	}
	plan := planWrites(perExecution, units)
	var writes atomic.Int64
	// A unit holds a slot while it writes.
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	start := time.Now()
feed:
	for i := range units {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
		wg.Go(func() {
			held := true
			defer func() {
				if held {
					<-slots
				}
			}()
			u := &unit{cs: cs, ns: ns, name: fmt.Sprintf("unit-%05d", i), runJobs: mode.runJobs}
			n, err := u.run(ctx, plan[i], func(job string) error {
				<-slots
				held = false
				if err := jobs.wait(ctx, job); err != nil {
					return err
				}
				select {
				case slots <- struct{}{}:
					held = true
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			})
			writes.Add(int64(n))
			if err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return 0, 0, err
	}
	return writes.Load(), elapsed, nil
}

// jobWatch tells, from a watch of a namespace's Jobs, when each has ended.
type jobWatch struct {
	mu   sync.Mutex
	ends map[string]*jobEnd
}

// jobEnd is closed when its Job has ended; failed says how.
type jobEnd struct {
	done   chan struct{}
	ended  bool
	failed bool
}

// watchJobs starts watching the namespace's Jobs, until ctx ends.
func watchJobs(ctx context.Context, cs kubernetes.Interface, ns string) (*jobWatch, error) {
	w := &jobWatch{ends: map[string]*jobEnd{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Batch().V1().Jobs().Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: w.observe, UpdateFunc: func(_, obj any) { w.observe(obj) },
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("the baseline's watch of %v did not sync", typ)
		}
	}
	return w, nil
}

// end returns the Job's record, made on first use by whichever comes first: the wait or the
// watch.
func (w *jobWatch) end(name string) *jobEnd {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.ends[name]
	if !ok {
		e = &jobEnd{done: make(chan struct{})}
		w.ends[name] = e
	}
	return e
}

// observe records a Job's end (condition Complete or Failed), once.
func (w *jobWatch) observe(obj any) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue || (c.Type != batchv1.JobComplete && c.Type != batchv1.JobFailed) {
			continue
		}
		e := w.end(j.Name)
		w.mu.Lock()
		if !e.ended {
			e.ended, e.failed = true, c.Type == batchv1.JobFailed
			close(e.done)
		}
		w.mu.Unlock()
		return
	}
}

// wait waits until the Job has completed.
func (w *jobWatch) wait(ctx context.Context, name string) error {
	e := w.end(name)
	select {
	case <-e.done:
		if e.failed {
			return fmt.Errorf("baseline Job %s failed", name)
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// planWrites spreads each kind of write over the units so that unit i makes
// floor((i+1)·avg) − floor(i·avg) of them: the totals match the measured averages.
func planWrites(perExecution map[string]float64, units int) []map[string]int {
	plan := make([]map[string]int, units)
	for i := range plan {
		plan[i] = map[string]int{}
		for k, avg := range perExecution {
			if n := int(math.Floor(float64(i+1)*avg) - math.Floor(float64(i)*avg)); n > 0 {
				plan[i][k] = n
			}
		}
	}
	return plan
}

// unit is one execution's worth of baseline writes.
type unit struct {
	cs       kubernetes.Interface
	ns, name string
	// runJobs: see baselineMode.
	runJobs bool
	// serviceAccount and roleUID are the unit's first ServiceAccount and Role once made, for its
	// pods and its RoleBindings' owner; jobs are the Jobs it has made.
	serviceAccount string
	roleUID        types.UID
	jobs           []string
}

// createRank orders a unit's creates as the executor makes them: the grant (ServiceAccount,
// Role, then the RoleBinding, which names its Role as owner) before the Job, whose pod runs as
// the ServiceAccount; anything else between.
var createRank = map[string]int{"serviceaccounts": 0, "roles": 1, "rolebindings": 2, "jobs": 4}

// run makes the unit's writes: creates, then updates, then deletes; with runJobs it waits
// (waitJob) for each of its Jobs to complete after its creates. It returns how many writes it
// made.
func (u *unit) run(ctx context.Context, writes map[string]int, waitJob func(job string) error) (int, error) {
	made := 0
	do := func(err error) error {
		if err == nil {
			made++
		}
		return err
	}
	if err := do(u.create(ctx, "configmaps", 0)); err != nil {
		return made, err
	}
	order := map[string]int{"create": 0, "update": 1, "patch": 1, "delete": 2}
	rank := func(k string) (int, int) {
		verb, resource, _ := strings.Cut(k, " ")
		r, ok := createRank[resource]
		if !ok {
			r = 3
		}
		if verb != "create" {
			r = 0
		}
		return order[verb], r
	}
	keys := slices.SortedFunc(maps.Keys(writes), func(a, b string) int {
		va, ra := rank(a)
		vb, rb := rank(b)
		return cmp.Or(cmp.Compare(va, vb), cmp.Compare(ra, rb), strings.Compare(a, b))
	})
	waited := !u.runJobs
	for _, k := range keys {
		verb, resource, _ := strings.Cut(k, " ")
		if !waited && verb != "create" {
			if err := u.waitJobs(waitJob); err != nil {
				return made, err
			}
			waited = true
		}
		for j := range writes[k] {
			var err error
			switch verb {
			case "create":
				err = u.create(ctx, resource, j)
			case "update", "patch":
				err = u.patch(ctx, resource, j)
			case "delete":
				err = u.remove(ctx, resource, j)
			default:
				continue
			}
			if err := do(err); err != nil {
				return made, fmt.Errorf("baseline %s: %w", k, err)
			}
		}
	}
	if !waited {
		return made, u.waitJobs(waitJob)
	}
	return made, nil
}

// waitJobs waits for each of the unit's Jobs to complete.
func (u *unit) waitJobs(waitJob func(job string) error) error {
	for _, job := range u.jobs {
		if err := waitJob(job); err != nil {
			return err
		}
	}
	return nil
}

// create makes the j-th object of resource for the unit.
func (u *unit) create(ctx context.Context, resource string, j int) error {
	cs, ns, name := u.cs, u.ns, u.name
	meta := metav1.ObjectMeta{Namespace: ns, Name: name}
	if j > 0 {
		meta.Name = fmt.Sprintf("%s-%d", name, j)
	}
	opts := metav1.CreateOptions{}
	var err error
	switch resource {
	case "configmaps":
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta}, opts)
	case "serviceaccounts":
		_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: ptr.To(false)}, opts)
		if err == nil && j == 0 {
			u.serviceAccount = meta.Name
		}
	case "roles":
		var role *rbacv1.Role
		role, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{targetName}},
		}}, opts)
		if err == nil && j == 0 {
			u.roleUID = role.UID
		}
	case "rolebindings":
		if u.runJobs && u.roleUID != "" {
			meta.OwnerReferences = []metav1.OwnerReference{{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role", Name: name, UID: u.roleUID, Controller: ptr.To(true)}}
		}
		_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}, opts)
	case "jobs":
		// Its first argument, "ok", has kwok finish the pod with exit code 0 (see
		// test/localcluster/kwok/pod-finish.yaml).
		_, err = cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{
			Suspend: ptr.To(!u.runJobs), BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				ServiceAccountName: u.serviceAccount, AutomountServiceAccountToken: ptr.To(true),
				Containers: []corev1.Container{{Name: "action", Image: "kubernaut-actions:bench", Args: []string{"ok"}}}}},
		}}, opts)
		if err == nil {
			u.jobs = append(u.jobs, meta.Name)
		}
	case "events":
		meta.Name = fmt.Sprintf("%s.%d", name, j)
		_, err = cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{ObjectMeta: meta, Type: corev1.EventTypeNormal, Reason: "Baseline",
			Message: "a baseline write", InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: name}}, opts)
	case "subjectaccessreviews":
		_, err = cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: adminUser.Username, Groups: adminUser.Groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "configmaps", Name: targetName},
		}}, opts)
	default:
		// Anything else the executor creates is written as a ConfigMap of its own.
		meta.Name = fmt.Sprintf("%s-%s-%d", name, strings.NewReplacer("/", "-", ".", "-").Replace(resource), j)
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta}, opts)
	}
	return err
}

// patch changes the unit's stand-in for resource: its Job for jobs, its ConfigMap for the
// execution (status and metadata) and anything else.
func (u *unit) patch(ctx context.Context, resource string, j int) error {
	body := fmt.Appendf(nil, `{"metadata":{"annotations":{"baseline":"%d"}}}`, j)
	var err error
	if resource == "jobs" {
		_, err = u.cs.BatchV1().Jobs(u.ns).Patch(ctx, u.name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	body = fmt.Appendf(nil, `{"data":{"status":"%s %d"}}`, resource, j)
	_, err = u.cs.CoreV1().ConfigMaps(u.ns).Patch(ctx, u.name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// remove deletes the unit's j-th object of resource.
func (u *unit) remove(ctx context.Context, resource string, j int) error {
	cs, ns, name := u.cs, u.ns, u.name
	if j > 0 {
		name = fmt.Sprintf("%s-%d", name, j)
	}
	opts := metav1.DeleteOptions{}
	switch resource {
	case "serviceaccounts":
		return cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, opts)
	case "roles":
		return cs.RbacV1().Roles(ns).Delete(ctx, name, opts)
	case "rolebindings":
		return cs.RbacV1().RoleBindings(ns).Delete(ctx, name, opts)
	case "jobs":
		return cs.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	default:
		return cs.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
	}
}
