package chaos_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
)

// apiAuditEvent is the part of an API server audit event the invariants read.
type apiAuditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

// apiRequest is one completed create or delete the API server logged.
type apiRequest struct {
	verb, resource, namespace, name, user string
	code                                  int
	at                                    time.Time
}

// apiRequests reads the API server's audit log: every completed create and delete of Jobs and
// executions in the namespaces (the policy logs nothing else). The log is written before each
// request completes (blocking mode), so it holds every request made so far.
func apiRequests(namespaces map[string]bool) ([]apiRequest, error) {
	f, err := os.Open(s.auditLog)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []apiRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev apiAuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// A restarted API server may have been stopped in the middle of a line.
			continue
		}
		if ev.Stage != "ResponseComplete" || ev.ObjectRef == nil || ev.ResponseStatus == nil || !namespaces[ev.ObjectRef.Namespace] {
			continue
		}
		out = append(out, apiRequest{
			verb: ev.Verb, resource: ev.ObjectRef.Resource, namespace: ev.ObjectRef.Namespace, name: ev.ObjectRef.Name,
			user: ev.User.Username, code: ev.ResponseStatus.Code, at: ev.StageTimestamp,
		})
	}
	return out, sc.Err()
}

// jobCreations counts, by namespace/name, the Jobs that came into existence, from the creates
// and deletes the API server logged, in order. A create answered 201 made one. A create answered
// 5xx may have made one or not: the API server answers 504 when the client goes away (a manager
// stopped in the middle of the request) even if the Job is stored. Such a create counts once
// something shows the Job existed after it and no other create made it: a later create refused
// as AlreadyExists, a delete that found it, or the Job still there at the end (existing).
func jobCreations(reqs []apiRequest, existing map[string]bool) map[string]int {
	type state struct{ exists, pending bool }
	states := map[string]*state{}
	out := map[string]int{}
	for _, r := range reqs {
		if r.resource != "jobs" {
			continue
		}
		key := r.namespace + "/" + r.name
		st := states[key]
		if st == nil {
			st = &state{}
			states[key] = st
		}
		switch {
		case r.verb == "create" && r.code == 201:
			out[key]++
			st.exists, st.pending = true, false
		case r.verb == "create" && r.code == 409:
			if !st.exists && st.pending {
				out[key]++
			}
			st.exists, st.pending = true, false
		case r.verb == "create" && r.code >= 500:
			st.pending = !st.exists
		case r.verb == "delete" && r.code >= 200 && r.code < 300:
			if !st.exists && st.pending {
				out[key]++
			}
			st.exists, st.pending = false, false
		case r.verb == "delete" && r.code == 404:
			st.exists, st.pending = false, false
		}
	}
	for key, st := range states {
		if st.pending && existing[key] {
			out[key]++
		}
	}
	return out
}

// jobNames lists the Jobs that exist in the namespaces, as namespace/name.
func jobNames(ctx context.Context, namespaces []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, ns := range namespaces {
		jobs := &batchv1.JobList{}
		if err := s.k8s.List(ctx, jobs, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		for _, j := range jobs.Items {
			out[ns+"/"+j.Name] = true
		}
	}
	return out, nil
}

// storedEvent is the part of a stored audit event the invariants read.
type storedEvent struct {
	EventID            string `json:"eventId"`
	ExecutionName      string `json:"executionName"`
	ExecutionNamespace string `json:"executionNamespace"`
	Phase              string `json:"phase"`
	DryRun             bool   `json:"dryRun"`
	Attempts           []struct {
		Number int32  `json:"number"`
		Job    string `json:"job"`
	} `json:"attempts"`
}

// storedEvents returns the events the storage service stored for executions in the namespaces,
// by namespace/name.
func storedEvents(namespaces map[string]bool) (map[string][]storedEvent, error) {
	out := map[string][]storedEvent{}
	for _, raw := range s.receiver.Events("") {
		var ev storedEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("a stored event: %w", err)
		}
		if namespaces[ev.ExecutionNamespace] {
			key := ev.ExecutionNamespace + "/" + ev.ExecutionName
			out[key] = append(out[key], ev)
		}
	}
	return out, nil
}

// grantObjects lists what is left of the executions' grants in the namespaces: the
// ServiceAccounts, Roles, RoleBindings, ClusterRoles and ClusterRoleBindings that the executor
// labels as its own and as one execution's (kubernaut.io/execution-uid), by kind/namespace/name.
// The templates' own ClusterRoles (kubernaut-action-<template>) carry no execution label.
func grantObjects(ctx context.Context, namespaces map[string]bool) (map[string]types.UID, error) {
	out := map[string]types.UID{}
	selector := []client.ListOption{
		client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue},
		client.HasLabels{v1alpha1.LabelExecutionUID},
	}
	lists := map[string]client.ObjectList{
		"ServiceAccount": &corev1.ServiceAccountList{}, "Role": &rbacv1.RoleList{}, "RoleBinding": &rbacv1.RoleBindingList{},
		"ClusterRole": &rbacv1.ClusterRoleList{}, "ClusterRoleBinding": &rbacv1.ClusterRoleBindingList{},
	}
	for kind, list := range lists {
		if err := s.k8s.List(ctx, list, selector...); err != nil {
			return nil, err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			o := item.(client.Object)
			if namespaces[o.GetNamespace()] || namespaces[o.GetLabels()[v1alpha1.LabelExecutionNamespace]] {
				out[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = o.GetUID()
			}
		}
	}
	return out, nil
}

// executions lists the executions in the namespaces, by namespace/name.
func executions(ctx context.Context, namespaces []string) (map[string]*v1alpha1.KubernetesExecution, error) {
	out := map[string]*v1alpha1.KubernetesExecution{}
	for _, ns := range namespaces {
		list := &v1alpha1.KubernetesExecutionList{}
		if err := s.k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		for i := range list.Items {
			e := &list.Items[i]
			out[e.Namespace+"/"+e.Name] = e
		}
	}
	return out, nil
}

// done reports whether an execution has ended and let go of everything: terminal, and no
// finalizer left (its grant revoked, its audit event acknowledged).
func done(e *v1alpha1.KubernetesExecution) bool {
	return e.Status.Phase.IsTerminal() && len(e.Finalizers) == 0
}

// finishedAt is when an execution was last changed by its end: its completion or the delivery
// of its audit event, whichever is later (whole seconds, as the API stores them).
func finishedAt(e *v1alpha1.KubernetesExecution) time.Time {
	var t time.Time
	if c := e.Status.CompletionTime; c != nil {
		t = c.Time
	}
	if a := e.Status.Audit; a != nil && a.DeliveredTime != nil && a.DeliveredTime.After(t) {
		t = a.DeliveredTime.Time
	}
	return t
}

// checkInvariants computes the scenario's row from the cluster, the API server's audit log and
// the storage service, for the executions admitted (r.admitted): each invariant's count of
// violations, and a line per violation in r.problems.
func (r *run) checkInvariants(ctx context.Context) {
	row := &r.row
	execs, err := executions(ctx, r.namespaces)
	r.must(err)
	reqs, err := apiRequests(r.nsSet)
	r.must(err)
	existing, err := jobNames(ctx, r.namespaces)
	r.must(err)
	creates := jobCreations(reqs, existing)
	events, err := storedEvents(r.nsSet)
	r.must(err)
	row.Executions = len(r.admitted)

	var last time.Time
	for _, p := range r.admitted {
		e := execs[p.key()]
		if e == nil {
			row.Lost++
			r.problem("%s: admitted, then gone", p.key())
			continue
		}
		delete(execs, p.key())
		if e.Status.Phase.IsTerminal() {
			row.Terminal++
		}
		if why := p.kind.verify(e); why != "" && (r.accept == nil || !r.accept(p, e)) {
			row.Lost++
			r.problem("%s (%s): %s", p.key(), p.kind.name, why)
		}
		if !done(e) {
			row.StuckFinalizers++
			r.problem("%s: phase %q, finalizers %v", p.key(), e.Status.Phase, e.Finalizers)
		} else if t := finishedAt(e); t.After(last) {
			last = t
		}
		r.checkJobs(p, e, creates)
		r.checkAudit(p, e, events)
	}
	for key := range execs {
		r.problem("%s: an execution the scenario did not admit", key)
	}
	for key, n := range creates {
		row.DuplicateAttempts += n
		r.problem("Job %s created %d times, for no attempt of an admitted execution", key, n)
	}
	for key, evs := range events {
		row.AuditDuplicatesStored += len(evs)
		r.problem("%s: %d audit events stored for an execution the scenario did not admit", key, len(evs))
	}
	r.collectGrants(ctx)
	row.AuditDuplicatesReceived = s.receiver.State().Counters.Duplicates - r.duplicatesBefore
	immediate, err := immediateResends(r.admitted)
	r.must(err)
	row.Notes["audit_resends_within_1s"] = immediate
	switch {
	case row.StuckFinalizers > 0 || row.Terminal < row.Executions:
		row.RecoverySeconds = -1 // not recovered
	case !r.faultEnd.IsZero() && last.After(r.faultEnd):
		row.RecoverySeconds = last.Sub(r.faultEnd).Seconds()
	}
}

// checkJobs counts, from the API server's audit log (jobCreations), the Jobs created for one
// execution: one per attempt its status records (numbers 1..n, none skipped), none created twice
// under one name (a Job deleted and created again is a second run of its attempt), none past the
// attempts recorded or the retry budget. It takes the execution's Jobs out of creates.
func (r *run) checkJobs(p *planned, e *v1alpha1.KubernetesExecution, creates map[string]int) {
	recorded := len(e.Status.Attempts)
	budget := int(p.kind.maxRetries) + 1
	for k := 1; k <= int(v1alpha1.MaxRetriesCap)+1; k++ {
		job := p.ns + "/" + controllers.JobName(p.name, int32(k)) //nolint:gosec // at most 11
		n := creates[job]
		delete(creates, job)
		switch {
		case k <= recorded && n == 0:
			r.row.SkippedAttempts++
			r.problem("%s: attempt %d is recorded, and its Job %s was never created", p.key(), k, job)
		case k <= recorded && n > 1:
			r.row.DuplicateAttempts += n - 1
			r.problem("%s: Job %s of attempt %d was created %d times", p.key(), job, k, n)
		case k > recorded && n > 0:
			r.row.DuplicateAttempts += n
			what := "past the attempts recorded"
			if k > budget {
				what = fmt.Sprintf("past the retry budget (maxRetries %d)", p.kind.maxRetries)
			}
			r.problem("%s: Job %s of attempt %d was created %d times, %s", p.key(), job, k, n, what)
		}
	}
}

// checkAudit checks that the storage service stored exactly one event for the execution, and
// that it is the execution's outcome (phase, attempts, dry run). It takes the execution's
// events out of events.
func (r *run) checkAudit(p *planned, e *v1alpha1.KubernetesExecution, events map[string][]storedEvent) {
	evs := events[p.key()]
	delete(events, p.key())
	switch {
	case len(evs) == 0:
		r.row.AuditMissing++
		r.problem("%s: no audit event stored", p.key())
		return
	case len(evs) > 1:
		r.row.AuditDuplicatesStored += len(evs) - 1
		ids := make([]string, 0, len(evs))
		for _, ev := range evs {
			ids = append(ids, ev.EventID+" ("+ev.Phase+")")
		}
		sort.Strings(ids)
		r.problem("%s: %d audit events stored: %v", p.key(), len(evs), ids)
	}
	if ev := evs[0]; ev.Phase != string(e.Status.Phase) || len(ev.Attempts) != len(e.Status.Attempts) || ev.DryRun != p.kind.dryRun {
		r.row.AuditMissing++
		r.problem("%s: the stored event says %s with %d attempts (dry run %t); the execution ended %s with %d",
			p.key(), ev.Phase, len(ev.Attempts), ev.DryRun, e.Status.Phase, len(e.Status.Attempts))
	}
}

// checkDeletion deletes every execution of the scenario and waits until they are gone: an
// execution that still holds a finalizer it can no longer release blocks this. It then lists
// the grants again (a deleted execution's are revoked before its finalizer is released).
func (r *run) checkDeletion(ctx context.Context) {
	for _, ns := range r.namespaces {
		r.must(s.k8s.DeleteAllOf(ctx, &v1alpha1.KubernetesExecution{}, client.InNamespace(ns)))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		left, err := executions(ctx, r.namespaces)
		r.must(err)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for key, e := range left {
				r.problem("%s: still there a minute after it was deleted (finalizers %v)", key, e.Finalizers)
				if done(e) {
					r.row.StuckFinalizers++ // not counted yet: it held none before
				}
			}
			break
		}
		sleep(ctx, time.Second)
	}
	r.collectGrants(ctx)
	r.row.UnrevokedGrants = len(r.grantsLeft)
	keys := make([]string, 0, len(r.grantsLeft))
	for _, key := range r.grantsLeft {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		r.problem("grant %s was not revoked", key)
	}
}

// collectGrants records the grant objects of the scenario's executions that are still there
// 30 seconds on. A revocation deletes the Role and the ServiceAccount; the RoleBinding, owned by
// the Role, goes with the garbage collector a moment later, so a grant is waited for before it
// counts as left behind.
func (r *run) collectGrants(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		grants, err := grantObjects(ctx, r.nsSet)
		r.must(err)
		if len(grants) == 0 || time.Now().After(deadline) {
			for key, uid := range grants {
				r.grantsLeft[uid] = key
			}
			return
		}
		sleep(ctx, time.Second)
	}
}

// immediateResends counts, from the storage service's log, the resends of the executions'
// events that came less than a second after the event was stored: a resend after a crash
// between delivery and release comes once the manager is back, seconds later; one this soon is
// the manager sending an event again in normal operation.
func immediateResends(admitted []*planned) (int, error) {
	names := map[string]bool{}
	for _, p := range admitted {
		names[p.name] = true
	}
	f, err := os.Open(s.receiverLog)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	var line struct {
		Time          time.Time `json:"time"`
		Msg           string    `json:"msg"`
		EventID       string    `json:"eventId"`
		ExecutionName string    `json:"executionName"`
	}
	stored := map[string]time.Time{}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || !names[line.ExecutionName] {
			continue
		}
		switch line.Msg {
		case "event stored":
			stored[line.EventID] = line.Time
		case "duplicate event refused":
			if t, ok := stored[line.EventID]; ok && line.Time.Sub(t) < time.Second {
				n++
			}
		}
	}
	return n, sc.Err()
}
