package scale

import (
	"context"
	"fmt"
	"math"
	"sort"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// baseline makes, with a bare client-go clientset and no rate limit, the writes that units
// executions cost the executor (perExecution: writes per execution by "verb resource", as the
// API server counted them), from workers goroutines, and returns the writes per second the API
// server took. Each write has a stand-in of the same kind where one exists: ServiceAccounts,
// Roles, RoleBindings, Jobs (suspended, so that no pod follows), Events and
// SubjectAccessReviews are made as such; the writes to the KubernetesExecution (its status, its
// finalizers) go to a ConfigMap per execution, which the baseline creates first and counts. A
// ConfigMap is stored as protobuf and an execution as JSON, so the baseline's writes are, if
// anything, cheaper than the executor's: the floor it sets is a high one.
func baseline(ctx context.Context, cfg *rest.Config, perExecution map[string]float64, units, workers int) (float64, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	ns := "bench-baseline"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	plan := planWrites(perExecution, units)
	var writes atomic.Int64
	work := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range work {
				n, err := baselineUnit(ctx, cs, ns, i, plan[i])
				writes.Add(int64(n))
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var firstErr error
feed:
	for i := range units {
		select {
		case work <- i:
		case firstErr = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if firstErr == nil {
		firstErr = <-errs
	}
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(writes.Load()) / elapsed.Seconds(), nil
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

// baselineUnit makes one execution's writes: creates, then updates, then deletes; it returns
// how many it made.
func baselineUnit(ctx context.Context, cs kubernetes.Interface, ns string, i int, writes map[string]int) (int, error) {
	name := fmt.Sprintf("unit-%05d", i)
	made := 0
	do := func(err error) error {
		if err == nil {
			made++
		}
		return err
	}
	if err := do(create(ctx, cs, ns, name, "configmaps", 0)); err != nil {
		return made, err
	}
	keys := make([]string, 0, len(writes))
	for k := range writes {
		keys = append(keys, k)
	}
	order := map[string]int{"create": 0, "update": 1, "patch": 1, "delete": 2}
	sort.Slice(keys, func(a, b int) bool {
		va, vb := strings.Fields(keys[a])[0], strings.Fields(keys[b])[0]
		if order[va] != order[vb] {
			return order[va] < order[vb]
		}
		return keys[a] < keys[b]
	})
	for _, k := range keys {
		verb, resource, _ := strings.Cut(k, " ")
		for j := range writes[k] {
			var err error
			switch verb {
			case "create":
				err = create(ctx, cs, ns, name, resource, j)
			case "update", "patch":
				err = patch(ctx, cs, ns, name, resource, j)
			case "delete":
				err = remove(ctx, cs, ns, name, resource, j)
			default:
				continue
			}
			if err := do(err); err != nil {
				return made, fmt.Errorf("baseline %s: %w", k, err)
			}
		}
	}
	return made, nil
}

// create makes the j-th object of resource for a unit.
func create(ctx context.Context, cs kubernetes.Interface, ns, name, resource string, j int) error {
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
	case "roles":
		_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{targetName}},
		}}, opts)
	case "rolebindings":
		_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}, opts)
	case "jobs":
		_, err = cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{
			Suspend: ptr.To(true), BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "action", Image: "kubernaut-actions:bench", Args: []string{"ok"}}}}},
		}}, opts)
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
func patch(ctx context.Context, cs kubernetes.Interface, ns, name, resource string, j int) error {
	body := fmt.Appendf(nil, `{"metadata":{"annotations":{"baseline":"%d"}}}`, j)
	var err error
	if resource == "jobs" {
		_, err = cs.BatchV1().Jobs(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	body = fmt.Appendf(nil, `{"data":{"status":"%s %d"}}`, resource, j)
	_, err = cs.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// remove deletes the unit's object of resource.
func remove(ctx context.Context, cs kubernetes.Interface, ns, name, resource string, j int) error {
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
