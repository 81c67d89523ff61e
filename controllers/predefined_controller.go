package controllers

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

const (
	// ReasonInvalidPredefinedAction is the reason of the Warning Event on a predefined action's
	// ConfigMap that does not hold a usable ActionTemplate.
	ReasonInvalidPredefinedAction = "InvalidPredefinedAction"
	// ReasonTemplateNotControlled is the reason of the Warning Event on a predefined action's
	// ConfigMap whose ActionTemplate name is taken by a template the manager did not create
	// from that ConfigMap.
	ReasonTemplateNotControlled = "TemplateNotControlled"
)

// PredefinedTemplateReconciler installs the predefined actions a Helm release enables. The chart
// installs one ConfigMap per enabled action in the manager's own namespace, labelled
// v1alpha1.LabelPredefinedAction and holding the action's ActionTemplate; this reconciler creates
// the template from it and marks it as created from that ConfigMap. Only the release's admins
// can write ConfigMaps in that namespace, and the manager reads no other ConfigMap, so no other
// object can install a template. Disabling the action removes the ConfigMap and the reconciler
// deletes the template, and the garbage collector then the template's RBAC. A template of that
// name which the reconciler did not create is never adopted or overwritten. (The chart cannot
// create the templates itself: their CRD is installed by the same release.)
type PredefinedTemplateReconciler struct {
	client.Client
	// Namespace is the manager's own namespace, the only one whose ConfigMaps it reads.
	Namespace string
	// Recorder records Events on the ConfigMaps.
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups="",namespace=kubernaut-system,resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// The chart's pre-delete hook (--cleanup-ceiling-fragments) runs with the manager's identity and
// deletes the release's ceiling fragments:
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=list;deletecollection

// Reconcile installs, updates or removes the ActionTemplate of one predefined action's ConfigMap.
func (r *PredefinedTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, req.NamespacedName, cm); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// The action was disabled (or the ConfigMap lost its label): its template goes too.
		return ctrl.Result{}, r.reconcileOrphans(ctx, req.NamespacedName, "")
	}
	if !cm.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileOrphans(ctx, req.NamespacedName, "")
	}
	want, err := PredefinedTemplate(cm)
	if err != nil {
		// Nothing a retry can fix: the ConfigMap must be corrected. (The controller logs the error.)
		r.Recorder.Eventf(cm, nil, corev1.EventTypeWarning, ReasonInvalidPredefinedAction, "InstallActionTemplate", "%s", err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	if err := r.reconcileTemplate(ctx, cm, want); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.reconcileOrphans(ctx, req.NamespacedName, want.Name)
}

// PredefinedTemplate returns the ActionTemplate that a predefined action's ConfigMap holds, as
// the manager installs it: the name, labels, annotations and spec of the YAML under
// v1alpha1.PredefinedTemplateKey, marked with v1alpha1.LabelPredefinedAction and
// v1alpha1.AnnotationPredefinedSource. The template's name must be the ConfigMap's
// v1alpha1.LabelPredefinedAction value.
func PredefinedTemplate(cm *corev1.ConfigMap) (*v1alpha1.ActionTemplate, error) {
	source := PredefinedSource(cm)
	action := cm.Labels[v1alpha1.LabelPredefinedAction]
	if action == "" {
		return nil, fmt.Errorf("ConfigMap %s has no %s label", source, v1alpha1.LabelPredefinedAction)
	}
	raw, ok := cm.Data[v1alpha1.PredefinedTemplateKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s has no %s key", source, v1alpha1.PredefinedTemplateKey)
	}
	parsed := &v1alpha1.ActionTemplate{}
	if err := yaml.UnmarshalStrict([]byte(raw), parsed); err != nil {
		return nil, fmt.Errorf("ConfigMap %s: %s is not an ActionTemplate: %w", source, v1alpha1.PredefinedTemplateKey, err)
	}
	if gvk := parsed.GroupVersionKind(); gvk != v1alpha1.GroupVersion.WithKind("ActionTemplate") {
		return nil, fmt.Errorf("ConfigMap %s: %s holds apiVersion %q kind %q, not an ActionTemplate of %s",
			source, v1alpha1.PredefinedTemplateKey, parsed.APIVersion, parsed.Kind, v1alpha1.GroupVersion)
	}
	if parsed.Name != action {
		return nil, fmt.Errorf("ConfigMap %s: %s holds the ActionTemplate %q but the label %s names %q",
			source, v1alpha1.PredefinedTemplateKey, parsed.Name, v1alpha1.LabelPredefinedAction, action)
	}
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{
			Name:        parsed.Name,
			Labels:      mergeLabels(maps.Clone(parsed.Labels), map[string]string{v1alpha1.LabelPredefinedAction: parsed.Name}),
			Annotations: mergeLabels(maps.Clone(parsed.Annotations), map[string]string{v1alpha1.AnnotationPredefinedSource: source}),
		},
		Spec: parsed.Spec,
	}
	return tpl, nil
}

// PredefinedSource is the value of v1alpha1.AnnotationPredefinedSource for templates created from cm.
func PredefinedSource(cm *corev1.ConfigMap) string {
	return cm.Namespace + "/" + cm.Name
}

// controlledBy reports whether tpl was created from the ConfigMap named source.
func controlledBy(tpl *v1alpha1.ActionTemplate, source string) bool {
	return tpl.Labels[v1alpha1.LabelPredefinedAction] == tpl.Name && tpl.Annotations[v1alpha1.AnnotationPredefinedSource] == source
}

// reconcileTemplate creates the template want, or brings the one it created earlier up to date.
// A template of that name that it did not create from cm is left as it is, with a Warning Event
// on cm that says why the action is not installed.
func (r *PredefinedTemplateReconciler) reconcileTemplate(ctx context.Context, cm *corev1.ConfigMap, want *v1alpha1.ActionTemplate) error {
	logger := log.FromContext(ctx).WithValues("template", want.Name, "configMap", client.ObjectKeyFromObject(cm))
	source := PredefinedSource(cm)
	tpl := &v1alpha1.ActionTemplate{}
	err := r.Get(ctx, client.ObjectKey{Name: want.Name}, tpl)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, want); err != nil {
			return templateWriteError("creating", want.Name, err)
		}
		logger.Info("installed a predefined ActionTemplate")
		return nil
	case err != nil:
		return fmt.Errorf("reading ActionTemplate %s: %w", want.Name, err)
	case !controlledBy(tpl, source):
		logger.Info("not installing a predefined action: an ActionTemplate of that name exists that the executor did not create from this ConfigMap")
		r.Recorder.Eventf(cm, tpl, corev1.EventTypeWarning, ReasonTemplateNotControlled, "InstallActionTemplate",
			"ActionTemplate %s exists and was not created from this ConfigMap (it lacks %s=%s and %s=%s); it is left unchanged, delete it to install the predefined action",
			tpl.Name, v1alpha1.LabelPredefinedAction, tpl.Name, v1alpha1.AnnotationPredefinedSource, source)
		return nil
	case !tpl.DeletionTimestamp.IsZero():
		// Its deletion event brings the ConfigMap back here, to create it again.
		return nil
	}
	before := tpl.DeepCopy()
	tpl.Labels = mergeLabels(tpl.Labels, want.Labels)
	tpl.Annotations = mergeLabels(tpl.Annotations, want.Annotations)
	if holds, err := specHolds(tpl.Spec, want.Spec); err != nil {
		return err
	} else if holds && equality.Semantic.DeepEqual(before.ObjectMeta, tpl.ObjectMeta) {
		return nil
	}
	tpl.Spec = want.Spec
	// The optimistic lock keeps the patch off a template that replaced this one meanwhile.
	if err := r.Patch(ctx, tpl, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return templateWriteError("updating", tpl.Name, err)
	}
	logger.Info("updated a predefined ActionTemplate")
	return nil
}

// specHolds reports whether have holds every field of want with want's value: the API server
// adds the schema's defaults to the spec it stores, so have may hold more.
func specHolds(have, want v1alpha1.ActionTemplateSpec) (bool, error) {
	h, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&have)
	if err != nil {
		return false, fmt.Errorf("converting a template spec: %w", err)
	}
	w, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want)
	if err != nil {
		return false, fmt.Errorf("converting a template spec: %w", err)
	}
	return holds(h, w), nil
}

// holds reports whether have holds want: every key of a map in want is in have with a value that
// holds want's; anything else (lists included) must be equal.
func holds(have, want any) bool {
	w, ok := want.(map[string]any)
	if !ok {
		return equality.Semantic.DeepEqual(have, want)
	}
	h, ok := have.(map[string]any)
	if !ok {
		return false
	}
	for k, v := range w {
		if hv, ok := h[k]; !ok || !holds(hv, v) {
			return false
		}
	}
	return true
}

// templateWriteError wraps a failed write of a template; a refusal by the webhook or the schema
// is terminal, as only a change of the ConfigMap can fix it.
func templateWriteError(verb, name string, err error) error {
	err = fmt.Errorf("%s ActionTemplate %s: %w", verb, name, err)
	if apierrors.IsInvalid(err) {
		return reconcile.TerminalError(err)
	}
	return err
}

// reconcileOrphans deletes the templates created from the ConfigMap named source, except the
// one named keep (none when keep is empty): those of a ConfigMap that is gone, or that now holds
// another template.
func (r *PredefinedTemplateReconciler) reconcileOrphans(ctx context.Context, source types.NamespacedName, keep string) error {
	list := &v1alpha1.ActionTemplateList{}
	if err := r.List(ctx, list, client.HasLabels{v1alpha1.LabelPredefinedAction}); err != nil {
		return fmt.Errorf("listing predefined ActionTemplates: %w", err)
	}
	for i := range list.Items {
		tpl := &list.Items[i]
		if tpl.Name == keep || !controlledBy(tpl, source.String()) || !tpl.DeletionTimestamp.IsZero() {
			continue
		}
		// The preconditions keep the delete off a template that changed or was replaced meanwhile.
		pre := client.Preconditions{UID: &tpl.UID, ResourceVersion: &tpl.ResourceVersion}
		if err := r.Delete(ctx, tpl, pre); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ActionTemplate %s: %w", tpl.Name, err)
		}
		log.FromContext(ctx).Info("deleted a predefined ActionTemplate whose ConfigMap no longer holds it", "template", tpl.Name, "configMap", source)
	}
	return nil
}

// configMapsFor maps a template to the ConfigMaps of the manager's namespace it concerns: the
// one it was created from (so that a template whose ConfigMap is gone is deleted, also when the
// ConfigMap went while the manager was down, as the watch lists every template at start), and
// any that holds a template of its name (so that the action is installed once a template of
// that name that the manager did not create is deleted).
func (r *PredefinedTemplateReconciler) configMapsFor(ctx context.Context, obj client.Object) []reconcile.Request {
	var out []reconcile.Request
	if _, marked := obj.GetLabels()[v1alpha1.LabelPredefinedAction]; marked {
		ns, name, ok := strings.Cut(obj.GetAnnotations()[v1alpha1.AnnotationPredefinedSource], "/")
		if ok && ns == r.Namespace && name != "" {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
		}
	}
	list := &corev1.ConfigMapList{}
	if err := r.List(ctx, list, client.InNamespace(r.Namespace), client.MatchingLabels{v1alpha1.LabelPredefinedAction: obj.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing predefined actions' ConfigMaps", "template", obj.GetName())
		return out
	}
	for _, cm := range list.Items {
		req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cm)}
		if len(out) == 0 || out[0] != req {
			out = append(out, req)
		}
	}
	return out
}

// SetupWithManager registers the reconciler for the predefined actions' ConfigMaps in the
// manager's namespace, and for ActionTemplates, mapped to those ConfigMaps.
func (r *PredefinedTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Namespace == "" {
		return fmt.Errorf("the predefined actions' reconciler needs the manager's namespace")
	}
	predefined := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetLabels()[v1alpha1.LabelPredefinedAction]
		return ok && o.GetNamespace() == r.Namespace
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.ConfigMap{}, builder.WithPredicates(predefined)).
		Watches(&v1alpha1.ActionTemplate{}, handler.EnqueueRequestsFromMapFunc(r.configMapsFor)).
		Named("predefinedtemplate").
		Complete(r)
}
