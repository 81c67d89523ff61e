package controllers

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// AnnotationActionTemplate, on a ceiling fragment, carries the ActionTemplate of a predefined
// action, as the chart read it from templates/.
const AnnotationActionTemplate = "kubernaut.io/action-template"

// PredefinedTemplateReconciler installs the predefined actions a Helm release enables. The chart
// installs one ceiling fragment per enabled action, carrying the action's ActionTemplate; this
// reconciler creates the template from it, owned by the fragment. Disabling the action removes
// the fragment, and the garbage collector removes the template and then the template's RBAC.
// (The chart cannot create the templates itself: their CRD is installed by the same release.)
type PredefinedTemplateReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=deletecollection

// Reconcile writes the template a fragment carries.
func (r *PredefinedTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fragment := &rbacv1.ClusterRole{}
	if err := r.Get(ctx, req.NamespacedName, fragment); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	raw := fragment.Annotations[AnnotationActionTemplate]
	if raw == "" || !fragment.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	want := &v1alpha1.ActionTemplate{}
	if err := yaml.UnmarshalStrict([]byte(raw), want); err != nil {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("ClusterRole %s: annotation %s is not an ActionTemplate: %w", fragment.Name, AnnotationActionTemplate, err))
	}
	tpl := &v1alpha1.ActionTemplate{ObjectMeta: metav1.ObjectMeta{Name: want.Name}}
	op, err := controllerutil.CreateOrPatch(ctx, r.Client, tpl, func() error {
		tpl.Labels = mergeLabels(tpl.Labels, want.Labels)
		tpl.Spec = want.Spec
		return controllerutil.SetControllerReference(fragment, tpl, r.Scheme())
	})
	if err != nil {
		if apierrors.IsInvalid(err) {
			// The webhook refused it: the message says why; nothing a retry can fix.
			return ctrl.Result{}, reconcile.TerminalError(err)
		}
		return ctrl.Result{}, err
	}
	if op != controllerutil.OperationResultNone {
		log.FromContext(ctx).Info("installed a predefined ActionTemplate", "template", tpl.Name, "operation", op)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler for ceiling fragments that carry a template.
func (r *PredefinedTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	carriesTemplate := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetAnnotations()[AnnotationActionTemplate] != ""
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&rbacv1.ClusterRole{}, builder.WithPredicates(carriesTemplate)).
		Owns(&v1alpha1.ActionTemplate{}).
		Named("predefinedtemplate").
		Complete(r)
}
