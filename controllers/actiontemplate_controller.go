package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// DefaultCeilingName is the aggregated ClusterRole that bounds what any template may grant.
const DefaultCeilingName = "kubernaut-executor-ceiling"

// ceilingRecheckInterval is how long a template whose ClusterRole the API server refused is
// left before it is tried again. The ceiling itself is watched (a fragment an administrator adds
// reconciles every template), but the API server's refusal can come from what is not: its
// authorizer not yet holding the ceiling's new rules, or the manager's binding to the ceiling.
const ceilingRecheckInterval = 30 * time.Second

// ActionTemplateReconciler materializes each template's RBAC rules as a ClusterRole, owned by the
// template, once it has checked that no rule is forbidden and that the ceiling covers them all.
type ActionTemplateReconciler struct {
	client.Client
	// CeilingName is the aggregated ClusterRole that bounds every template's rules.
	CeilingName string
}

// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates/status,verbs=get;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=get;list;watch;create;patch;delete

// Reconcile checks a template's rules and materializes them; its status says whether the
// template can be used and why not.
func (r *ActionTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	tpl := &v1alpha1.ActionTemplate{}
	if err := r.Get(ctx, req.NamespacedName, tpl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tpl.DeepCopy()
	defer func() {
		tpl.Status.ObservedGeneration = tpl.Generation
		if equality.Semantic.DeepEqual(before.Status, tpl.Status) {
			return
		}
		if err := r.Status().Patch(ctx, tpl, client.MergeFrom(before)); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("writing status: %w", err))
		}
	}()

	rules := tpl.Spec.RBAC.Rules
	if errs := grants.CheckRules(rules, field.NewPath("spec", "rbac", "rules")); len(errs) > 0 {
		setTemplateNotReady(tpl, v1alpha1.ReasonForbiddenRule, errs.ToAggregate().Error(), true)
		return ctrl.Result{}, nil
	}
	if errs := validation.Template(tpl); len(errs) > 0 {
		setTemplateNotReady(tpl, v1alpha1.ReasonInvalidTemplate, errs.ToAggregate().Error(), true)
		return ctrl.Result{}, nil
	}
	if missing, err := r.uncovered(ctx, rules); err != nil {
		return ctrl.Result{}, err
	} else if missing != "" {
		// No requeue: only a change of the ceiling or of the template can make the ceiling
		// cover the rules, and both are watched (SetupWithManager).
		setTemplateNotReady(tpl, v1alpha1.ReasonRulesExceedCeiling, missing, false)
		return ctrl.Result{}, nil
	}
	if err := r.reconcileClusterRole(ctx, tpl); err != nil {
		if apierrors.IsForbidden(err) {
			// The API server's own escalation check: the manager does not hold these rules.
			setTemplateNotReady(tpl, v1alpha1.ReasonRulesExceedCeiling, err.Error(), false)
			return ctrl.Result{RequeueAfter: ceilingRecheckInterval}, nil
		}
		setTemplateNotReady(tpl, v1alpha1.ReasonMaterializationFailed, err.Error(), false)
		return ctrl.Result{}, err
	}
	setTemplateReady(tpl)
	return ctrl.Result{}, nil
}

// uncovered says which rules the ceiling does not cover, "" when it covers them all.
func (r *ActionTemplateReconciler) uncovered(ctx context.Context, rules []rbacv1.PolicyRule) (string, error) {
	if len(rules) == 0 {
		return "", nil
	}
	ceiling := &rbacv1.ClusterRole{}
	err := r.Get(ctx, types.NamespacedName{Name: r.CeilingName}, ceiling)
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("the RBAC ceiling ClusterRole %q does not exist (or lacks the label %s=%s), so no rule can be granted", r.CeilingName, v1alpha1.LabelPartOf, v1alpha1.PartOfValue), nil
	}
	if err != nil {
		return "", err
	}
	if missing := grants.Uncovered(ceiling.Rules, rules); missing != nil {
		return fmt.Sprintf("rules not covered by the RBAC ceiling %q: %s (an administrator can add a ceiling fragment: a ClusterRole labelled %s=true)",
			r.CeilingName, grants.FormatRules(missing), v1alpha1.LabelAggregateToCeiling), nil
	}
	return "", nil
}

// reconcileClusterRole writes the template's ClusterRole with its rules, owned by the template.
func (r *ActionTemplateReconciler) reconcileClusterRole(ctx context.Context, tpl *v1alpha1.ActionTemplate) error {
	if len(tpl.Spec.RBAC.Rules) == 0 {
		return nil
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: TemplateClusterRoleName(tpl.Name)}}
	_, err := controllerutil.CreateOrPatch(ctx, r.Client, role, func() error {
		role.Labels = mergeLabels(role.Labels, map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelPartOf: v1alpha1.PartOfValue, v1alpha1.LabelActionType: tpl.Name})
		role.Rules = tpl.Spec.RBAC.Rules
		return controllerutil.SetControllerReference(tpl, role, r.Scheme())
	})
	return err
}

func setTemplateReady(tpl *v1alpha1.ActionTemplate) {
	msg := "The action needs no RBAC; executions run with no grant"
	if len(tpl.Spec.RBAC.Rules) > 0 {
		tpl.Status.ClusterRoleName = TemplateClusterRoleName(tpl.Name)
		msg = fmt.Sprintf("Rules materialized as ClusterRole %s; executions are granted them on their target only", tpl.Status.ClusterRoleName)
	} else {
		tpl.Status.ClusterRoleName = ""
	}
	tpl.Status.EffectiveRules = tpl.Spec.RBAC.Rules
	setTemplateConditions(tpl, metav1.ConditionTrue, v1alpha1.ReasonRulesMaterialized, msg, false)
}

// setTemplateNotReady records why a template cannot be used; stalled when only an edit of
// the template itself can fix it.
func setTemplateNotReady(tpl *v1alpha1.ActionTemplate, reason, message string, stalled bool) {
	tpl.Status.ClusterRoleName, tpl.Status.EffectiveRules = "", nil
	setTemplateConditions(tpl, metav1.ConditionFalse, reason, message, stalled)
}

func setTemplateConditions(tpl *v1alpha1.ActionTemplate, status metav1.ConditionStatus, reason, message string, stalled bool) {
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRBACMaterialized} {
		meta.SetStatusCondition(&tpl.Status.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: message, ObservedGeneration: tpl.Generation,
		})
	}
	if stalled {
		meta.SetStatusCondition(&tpl.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: tpl.Generation,
		})
	} else {
		meta.RemoveStatusCondition(&tpl.Status.Conditions, v1alpha1.ConditionStalled)
	}
}

func mergeLabels(have, want map[string]string) map[string]string {
	if have == nil {
		have = map[string]string{}
	}
	for k, v := range want {
		have[k] = v
	}
	return have
}

// SetupWithManager registers the reconciler; it watches templates, the ClusterRoles they own,
// and the ceiling (a change to it may make templates ready or not).
func (r *ActionTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ActionTemplate{}).
		Owns(&rbacv1.ClusterRole{}).
		Watches(&rbacv1.ClusterRole{}, handler.EnqueueRequestsFromMapFunc(r.allTemplates),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == r.CeilingName }))).
		Named("actiontemplate").
		Complete(r)
}

// allTemplates maps a change of the ceiling to every template.
func (r *ActionTemplateReconciler) allTemplates(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &v1alpha1.ActionTemplateList{}
	if err := r.List(ctx, list); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&t)})
	}
	return out
}
