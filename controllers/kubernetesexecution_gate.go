package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// An execution's first attempt starts only once the gate lets it through, in this order:
//
//  1. Approval: an execution that needs it (validation.NeedsApproval) waits in AwaitingApproval
//     until an approver's decision is recorded (status.approval, set by the webhook), at most
//     its timeout from its creation. Denied, or not decided in time, it fails; nothing ran.
//  2. The queue: one running execution of a mutating action per target (TargetBusy), the
//     action's concurrency cap and the manager's cap on running executions (QueueFull), the
//     action's rate limit (RateLimited). Waiting executions go in creation order; each waits at
//     most its queue timeout, counted from its creation or its approval, and then fails with
//     the reason it waited for.
//
// Everything the gate reads is in the cluster (the executions' specs and statuses, the
// templates), never in the manager's memory, so a restarted manager keeps the order and the
// caps. The caps are checked when an execution starts; its retries are part of the same running
// execution and do not queue again. The execution's timeout counts from its start.

// gate is why an execution may not start its first attempt yet, or why it never will.
type gate struct {
	// phase is AwaitingApproval or Pending.
	phase v1alpha1.ExecutionPhase
	// reason and message explain the wait (the Ready condition's).
	reason, message string
	// denied, when set, fails the execution at once with reason and message.
	denied bool
	// failAt is when the wait ends in failure (the approval or the queue timeout), with
	// failReason and failMessage.
	failAt                  time.Time
	failReason, failMessage string
	// wakeAt is when time alone may open the gate (a rate limit's window moves on); zero when
	// only another execution's change can.
	wakeAt time.Time
}

// queueState indexes executions by where they stand in the queue: "started" (an attempt was
// made, not ended), "waiting" (no attempt yet, not ended, not being deleted). Ended executions
// are not indexed.
const queueStateIndex = ".queue.state"

// targetIndex indexes executions by their target (kind, namespace, name).
const targetIndex = ".spec.action.target"

func queueState(o client.Object) []string {
	e := o.(*v1alpha1.KubernetesExecution)
	switch {
	case e.Status.Phase.IsTerminal() || !e.DeletionTimestamp.IsZero():
		return nil
	case len(e.Status.Attempts) > 0:
		return []string{"started"}
	}
	return []string{"waiting"}
}

func targetKey(t v1alpha1.TargetSpec) string {
	key := t.ResourceKind + "/" + t.Namespace + "/" + t.ResourceName
	if t.Cluster != "" {
		// The same name in another cluster is another object.
		key = t.Cluster + ":" + key
	}
	return key
}

// indexQueue registers the indexes the gate reads.
func indexQueue(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1alpha1.KubernetesExecution{}, queueStateIndex, queueState); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &v1alpha1.KubernetesExecution{}, targetIndex, targetIndexFunc)
}

// observeGate returns what holds obj back from its first attempt, nil when it may start now. It
// is asked only before the first attempt, once the template is known to be usable.
func (r *KubernetesExecutionReconciler) observeGate(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, now time.Time) (*gate, error) {
	if g := approvalGateAt(obj, tpl, waitingSince(obj, now)); g != nil {
		return g, nil
	}
	q := &queue{r: r, ctx: ctx, templates: map[string]*v1alpha1.ActionTemplate{tpl.Name: tpl}}
	wait, err := q.wait(obj, tpl, now)
	if err != nil || wait == nil {
		return nil, err
	}
	since := waitingSince(obj, now)
	if a := obj.Status.Approval; a != nil && a.Time.After(since) {
		since = a.Time.Time
	}
	limit := validation.QueueTimeout(obj, tpl)
	wait.phase = v1alpha1.PhasePending
	wait.failAt, wait.failReason = since.Add(limit), wait.reason
	wait.failMessage = fmt.Sprintf("no attempt started within the queue timeout (%s): %s", limit, wait.message)
	return wait, nil
}

// approvalGate is the wait for approval, or the decision that ends the execution; nil once it
// was approved or needs no approval.
func approvalGate(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) *gate {
	return approvalGateAt(obj, tpl, waitingSince(obj, time.Time{}))
}

// waitingSince is when obj began to wait, now when it has not yet.
func waitingSince(obj *v1alpha1.KubernetesExecution, now time.Time) time.Time {
	if w := obj.Status.WaitingSince; w != nil {
		return w.Time
	}
	return now
}

func approvalGateAt(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, since time.Time) *gate {
	if !validation.NeedsApproval(obj, tpl) {
		return nil
	}
	a := obj.Status.Approval
	switch {
	case a == nil:
		limit := validation.Timeout(obj, tpl)
		return &gate{
			phase: v1alpha1.PhaseAwaitingApproval, reason: v1alpha1.ReasonAwaitingApproval,
			message: fmt.Sprintf("Waiting for approval: someone allowed to approve kubernetesexecutions (not the requester) approves or denies it, for example with kubectl kubernaut approve %s -n %s", obj.Name, obj.Namespace),
			failAt:  since.Add(limit), failReason: v1alpha1.ReasonApprovalTimedOut,
			failMessage: fmt.Sprintf("nobody approved or denied the execution within its timeout (%s); it never ran", limit),
		}
	case a.Decision == v1alpha1.DecisionDenied:
		return &gate{denied: true, reason: v1alpha1.ReasonDenied,
			message: fmt.Sprintf("denied by %s at %s: %s", a.Approver.Username, a.Time.UTC().Format(time.RFC3339), a.Reason)}
	}
	return nil
}

// queue answers, for one pass, where an execution stands among the others; it caches the
// templates it reads.
type queue struct {
	r         *KubernetesExecutionReconciler
	ctx       context.Context
	templates map[string]*v1alpha1.ActionTemplate
}

// template returns the named template from the cache (without a copy: read only), nil when it
// does not exist.
func (q *queue) template(name string) *v1alpha1.ActionTemplate {
	if tpl, ok := q.templates[name]; ok {
		return tpl
	}
	tpl := &v1alpha1.ActionTemplate{}
	if err := q.r.Get(q.ctx, types.NamespacedName{Name: name}, tpl, client.UnsafeDisableDeepCopy); err != nil {
		tpl = nil
	}
	q.templates[name] = tpl
	return tpl
}

// list returns the executions whose index field has value, from the cache's index, without
// copies. A client without the manager's indexes (one that reads the API server, which knows no
// such field) gets every execution, filtered here.
func (q *queue) list(field, value string) ([]*v1alpha1.KubernetesExecution, error) {
	list := &v1alpha1.KubernetesExecutionList{}
	err := q.r.List(q.ctx, list, client.MatchingFields{field: value}, client.UnsafeDisableDeepCopy)
	filter := apierrors.IsBadRequest(err)
	if filter {
		err = q.r.List(q.ctx, list)
	}
	if err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.KubernetesExecution, 0, len(list.Items))
	for i := range list.Items {
		if e := &list.Items[i]; !filter || slices.Contains(indexFuncs[field](e), value) {
			out = append(out, e)
		}
	}
	return out, nil
}

// indexFuncs are the gate's indexes, by field.
var indexFuncs = map[string]func(client.Object) []string{
	queueStateIndex: queueState,
	targetIndex:     targetIndexFunc,
	actionTypeIndex: actionTypeIndexFunc,
}

func targetIndexFunc(o client.Object) []string {
	return []string{targetKey(o.(*v1alpha1.KubernetesExecution).Spec.Action.Target)}
}

func actionTypeIndexFunc(o client.Object) []string {
	return []string{o.(*v1alpha1.KubernetesExecution).Spec.Action.Type}
}

// started reports whether e has made an attempt and not ended.
func started(e *v1alpha1.KubernetesExecution) bool {
	return len(e.Status.Attempts) > 0 && !e.Status.Phase.IsTerminal() && e.DeletionTimestamp.IsZero()
}

// ahead reports whether e waits ahead of obj: not started, not ended, ready to start (approved
// if it needs to be), and created before obj (by name on a tie: creation times have whole
// seconds).
func (q *queue) ahead(e, obj *v1alpha1.KubernetesExecution) bool {
	if e.UID == obj.UID || len(e.Status.Attempts) > 0 || e.Status.Phase.IsTerminal() || !e.DeletionTimestamp.IsZero() {
		return false
	}
	if !before(e, obj) {
		return false
	}
	tpl := q.template(e.Spec.Action.Type)
	return tpl != nil && approvalGate(e, tpl) == nil
}

func before(a, b *v1alpha1.KubernetesExecution) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// wait returns obj's wait in the queue (reason, message and, for a rate limit, when it may
// end), nil when it may start.
func (q *queue) wait(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, now time.Time) (*gate, error) {
	if tpl.Spec.IsMutating() {
		same, err := q.list(targetIndex, targetKey(obj.Spec.Action.Target))
		if err != nil {
			return nil, err
		}
		sort.Slice(same, func(i, j int) bool { return before(same[i], same[j]) })
		for _, e := range same {
			other := q.template(e.Spec.Action.Type)
			if e.UID == obj.UID || other == nil || !other.Spec.IsMutating() {
				continue
			}
			if started(e) {
				return &gate{reason: v1alpha1.ReasonTargetBusy, message: fmt.Sprintf(
					"Waiting for execution %s/%s (%s), which runs on the same target", e.Namespace, e.Name, e.Spec.Action.Type)}, nil
			}
			if q.ahead(e, obj) {
				return &gate{reason: v1alpha1.ReasonTargetBusy, message: fmt.Sprintf(
					"Waiting for execution %s/%s (%s), created earlier on the same target", e.Namespace, e.Name, e.Spec.Action.Type)}, nil
			}
		}
	}
	var ofAction []*v1alpha1.KubernetesExecution
	if tpl.Spec.Concurrency != nil || tpl.Spec.RateLimit != nil {
		var err error
		if ofAction, err = q.list(actionTypeIndex, tpl.Name); err != nil {
			return nil, err
		}
	}
	if c := tpl.Spec.Concurrency; c != nil {
		running, waiting := 0, 0
		for _, e := range ofAction {
			switch {
			case started(e):
				running++
			case q.ahead(e, obj):
				waiting++
			}
		}
		if running+waiting >= int(c.Max) {
			return &gate{reason: v1alpha1.ReasonQueueFull, message: fmt.Sprintf(
				"Waiting for a slot of action %s: %d of its executions run and %d wait ahead of this one (spec.concurrency.max %d)", tpl.Name, running, waiting, c.Max)}, nil
		}
	}
	if limit := q.r.Options.MaxRunningJobs; limit > 0 {
		all, err := q.list(queueStateIndex, "started")
		if err != nil {
			return nil, err
		}
		waiting, err := q.list(queueStateIndex, "waiting")
		if err != nil {
			return nil, err
		}
		ahead := 0
		for _, e := range waiting {
			if q.ahead(e, obj) {
				ahead++
			}
		}
		if len(all)+ahead >= limit {
			return &gate{reason: v1alpha1.ReasonQueueFull, message: fmt.Sprintf(
				"Waiting for a slot: %d executions run and %d wait ahead of this one (the executor runs at most %d at once, --max-running-jobs)", len(all), ahead, limit)}, nil
		}
	}
	if rl := tpl.Spec.RateLimit; rl != nil {
		var starts []time.Time
		waiting := 0
		for _, e := range ofAction {
			switch {
			case e.UID == obj.UID:
			case len(e.Status.Attempts) > 0 && e.Status.StartTime != nil && now.Sub(e.Status.StartTime.Time) < rl.Per.Duration:
				starts = append(starts, e.Status.StartTime.Time)
			case q.ahead(e, obj):
				waiting++
			}
		}
		if len(starts)+waiting >= int(rl.Max) {
			g := &gate{reason: v1alpha1.ReasonRateLimited, message: fmt.Sprintf(
				"Waiting for the rate limit of action %s (%d per %s): %d started in the last %s and %d wait ahead of this one",
				tpl.Name, rl.Max, rl.Per.Duration, len(starts), rl.Per.Duration, waiting)}
			if len(starts) > 0 {
				sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
				g.wakeAt = starts[0].Add(rl.Per.Duration)
			}
			return g, nil
		}
	}
	return nil, nil
}

// decideGate records the wait, or ends the execution when the wait has failed; it returns when
// to look again (0: only an event will change anything).
func decideGate(obj *v1alpha1.KubernetesExecution, g *gate, now time.Time) time.Duration {
	if obj.Status.WaitingSince == nil {
		obj.Status.WaitingSince = &metav1.Time{Time: now}
	}
	switch {
	case g.denied:
		setApproved(obj, metav1.ConditionFalse, v1alpha1.ReasonDenied, g.message, now)
		failExecution(obj, g.reason, g.message, now)
		return 0
	case !now.Before(g.failAt):
		if g.phase == v1alpha1.PhaseAwaitingApproval {
			setApproved(obj, metav1.ConditionFalse, v1alpha1.ReasonApprovalTimedOut, g.failMessage, now)
		}
		failExecution(obj, g.failReason, g.failMessage, now)
		return 0
	}
	if g.phase == v1alpha1.PhaseAwaitingApproval && meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionApproved) == nil {
		setApproved(obj, metav1.ConditionUnknown, v1alpha1.ReasonAwaitingApproval, "Waiting for an approver's decision", now)
	}
	setPhase(obj, g.phase, g.reason, g.message, now)
	wake := g.failAt
	if !g.wakeAt.IsZero() && g.wakeAt.Before(wake) {
		wake = g.wakeAt
	}
	return max(wake.Sub(now), time.Millisecond)
}

// setApproved sets the Approved condition.
func setApproved(obj *v1alpha1.KubernetesExecution, status metav1.ConditionStatus, reason, message string, now time.Time) {
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionApproved, Status: status, Reason: reason, Message: message,
		ObservedGeneration: obj.Generation, LastTransitionTime: metav1.NewTime(now),
	})
}

// waitingReasons are the Ready reasons of an execution held by the gate.
var waitingReasons = []string{v1alpha1.ReasonAwaitingApproval, v1alpha1.ReasonTargetBusy, v1alpha1.ReasonQueueFull, v1alpha1.ReasonRateLimited}

// waitingReason returns the reason an execution is held by the gate, "" when it is not.
func waitingReason(e *v1alpha1.KubernetesExecution) string {
	if len(e.Status.Attempts) > 0 || e.Status.Phase.IsTerminal() {
		return ""
	}
	c := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		return ""
	}
	for _, r := range waitingReasons {
		if c.Reason == r {
			return r
		}
	}
	return ""
}
