// Package webhooks holds the executor's admission webhooks: a bad KubernetesExecution or
// ActionTemplate is rejected at kubectl apply, with every offending field named, before any Job
// exists; and an execution carries who asked for it (and for whom), and who approved it, as the
// API server authenticated them.
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// KubernetesExecutionValidator admits an execution only if it fits its template and its
// requester holds every permission the execution's grant would give the action.
type KubernetesExecutionValidator struct {
	// Reader reads ActionTemplates (the manager's cache).
	Reader client.Reader
	// Mapper finds the target kind's resource and the scope of every granted resource.
	Mapper meta.RESTMapper
	// Reviewer answers SubjectAccessReviews.
	Reviewer access.Creator
	// Validator holds the compiled parameter schemas, shared with the controller.
	Validator *validation.Validator
	// Clusters are the registered target clusters; nil refuses every execution that names one.
	Clusters Clusters
}

// Clusters answers for the registered target clusters.
type Clusters interface {
	// Target returns the RESTMapper of the target cluster called name and a reviewer of its
	// SubjectAccessReviews. registered is false for a cluster nobody registered; mapper is nil,
	// and why says why, for one that does not answer.
	Target(name string) (mapper meta.RESTMapper, reviewer access.Creator, registered bool, why string)
	// Names lists the registered clusters.
	Names() []string
	// Identity returns who user is on the cluster called name: themselves, or the identity its
	// Secret's identity map gives them; an error when the map does not name them.
	Identity(name string, user v1alpha1.UserInfo) (v1alpha1.UserInfo, error)
}

var clusterPath = field.NewPath("spec", "action", "target", "cluster")

// +kubebuilder:webhook:path=/validate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution,mutating=false,failurePolicy=fail,sideEffects=None,groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=create;update,versions=v1alpha1,name=vkubernetesexecution.kubernaut.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"create-or-spec-change","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec"}]}`
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

var _ admission.Validator[*v1alpha1.KubernetesExecution] = &KubernetesExecutionValidator{}

// ValidateCreate checks a new execution.
func (v *KubernetesExecutionValidator) ValidateCreate(ctx context.Context, obj *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	return nil, v.validate(ctx, obj)
}

// ValidateUpdate refuses any change to the spec. Other updates (finalizers, labels) pass: the
// execution was checked when it was created.
func (v *KubernetesExecutionValidator) ValidateUpdate(_ context.Context, oldObj, obj *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	if equality.Semantic.DeepEqual(oldObj.Spec, obj.Spec) {
		return nil, nil
	}
	return nil, invalid(obj, field.ErrorList{field.Forbidden(field.NewPath("spec"), "spec is immutable; create a new KubernetesExecution instead")})
}

// ValidateDelete allows every deletion.
func (v *KubernetesExecutionValidator) ValidateDelete(context.Context, *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	return nil, nil
}

var (
	typePath      = field.NewPath("spec", "action", "type")
	admissionPath = field.NewPath("spec", "admission")
)

// validate checks obj against its template. The template is read without a copy (every
// review reads it, and its parameter schema may be tens of KiB): it shares its maps, slices and
// pointers with the manager's cache, and nothing here may change it.
func (v *KubernetesExecutionValidator) validate(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	tpl := &v1alpha1.ActionTemplate{}
	if err := v.Reader.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return invalid(obj, field.ErrorList{field.NotFound(typePath, obj.Spec.Action.Type)})
		}
		return apierrors.NewInternalError(err)
	}
	var errs field.ErrorList
	if ready, _, message := validation.TemplateUsable(tpl); !ready {
		errs = append(errs, field.Invalid(typePath, obj.Spec.Action.Type, fmt.Sprintf("ActionTemplate %q is not ready: %s", tpl.Name, message)))
	}
	user, recErr, err := v.requester(ctx, obj)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if recErr != nil {
		errs = append(errs, recErr)
	} else if rec := obj.Spec.Admission; rec.TemplateUID != tpl.UID || rec.TemplateGeneration != tpl.Generation {
		errs = append(errs, field.Invalid(admissionPath.Child("templateGeneration"), rec.TemplateGeneration,
			fmt.Sprintf("ActionTemplate %q changed while the execution was admitted (now generation %d); apply the execution again", tpl.Name, tpl.Generation)))
	}
	if fitErrs := v.Validator.Execution(obj, tpl); len(fitErrs) > 0 {
		errs = append(errs, fitErrs...)
	} else {
		// The controller renders when it builds each attempt's Job; admission renders once,
		// so that parameters the template cannot render are a field error, not a failed run.
		errs = append(errs, v.Validator.RenderErrors(obj, tpl)...)
	}

	mapper, reviewer := v.Mapper, v.Reviewer
	if name := obj.Spec.Action.Target.Cluster; name != "" {
		var clusterErrs field.ErrorList
		mapper, reviewer, clusterErrs, err = v.targetCluster(ctx, name, user)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		errs = append(errs, clusterErrs...)
		if mapper == nil {
			return invalid(obj, errs)
		}
	}
	grant, grantErrs := grants.Compute(mapper, tpl, obj.Spec.Action.Target, obj.Namespace)
	errs = append(errs, grantErrs...)
	if user != nil && len(grantErrs) == 0 {
		// In a target cluster, its API server judges the requester's rights there, under the
		// name the cluster knows them by.
		there, name := *user, obj.Spec.Action.Target.Cluster
		if name != "" {
			if there, err = v.Clusters.Identity(name, *user); err != nil {
				return invalid(obj, append(errs, field.Forbidden(clusterPath, fmt.Sprintf("%s has no identity on cluster %q: %v", user.Username, name, err))))
			}
		}
		missing, err := access.Missing(ctx, reviewer, there, grant.Permissions())
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if len(missing) > 0 {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "action", "target"), fmt.Sprintf(
				"%s may not %s, which action %q would be granted on %s; the executor acts for no one beyond their own rights",
				access.DescribeAs(*user, there, name), access.Describe(missing), tpl.Name, describeTarget(obj))))
		}
	}
	if len(errs) > 0 {
		return invalid(obj, errs)
	}
	return nil
}

// targetCluster checks an execution's target cluster: registered, answering, and the requester
// may execute there (the verb execute on clusters/<name> in the executor's own cluster). It
// returns the cluster's mapper and reviewer, or a nil mapper when the execution cannot be
// checked further there.
func (v *KubernetesExecutionValidator) targetCluster(ctx context.Context, name string, user *v1alpha1.UserInfo) (meta.RESTMapper, access.Creator, field.ErrorList, error) {
	var errs field.ErrorList
	if user != nil {
		missing, err := access.Missing(ctx, v.Reviewer, *user, []grants.Permission{access.ExecuteOnCluster(name)})
		if err != nil {
			return nil, nil, nil, err
		}
		if len(missing) > 0 {
			errs = append(errs, field.Forbidden(clusterPath, fmt.Sprintf(
				"%s may not execute on cluster %q: that takes the verb execute on %s.%s named %q in the executor's cluster",
				user.Username, name, access.ClustersResource, v1alpha1.GroupVersion.Group, name)))
		}
	}
	if v.Clusters == nil {
		return nil, nil, append(errs, field.Invalid(clusterPath, name, "no target cluster is registered with this executor")), nil
	}
	mapper, reviewer, registered, why := v.Clusters.Target(name)
	switch {
	case !registered:
		return nil, nil, append(errs, field.Invalid(clusterPath, name, fmt.Sprintf(
			"no such target cluster; registered: %v (a Secret labelled %s=true in the executor's namespace registers one)", v.Clusters.Names(), v1alpha1.LabelCluster))), nil
	case mapper == nil:
		return nil, nil, append(errs, field.Invalid(clusterPath, name, why+"; the execution cannot be checked there now, try again")), nil
	}
	return mapper, reviewer, errs, nil
}

// requester returns the user recorded at admission, whose rights bound the execution, after
// checking the record against the request (the defaulting webhook records it; the API server's
// admission policy enforces it even without the webhooks). The requester is the user who creates
// the execution, or, when the execution is created on behalf of someone
// (kubernaut.io/on-behalf-of), the user it names, provided the creator, recorded as createdBy,
// may impersonate them. An error means the API server could not answer.
func (v *KubernetesExecutionValidator) requester(ctx context.Context, obj *v1alpha1.KubernetesExecution) (*v1alpha1.UserInfo, *field.Error, error) {
	rec := obj.Spec.Admission
	if rec == nil {
		return nil, field.Required(admissionPath, "the executor's defaulting webhook records the requester; it did not run"), nil
	}
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return &rec.Requester, nil, nil
	}
	creator := UserInfoOf(req.UserInfo)
	named, onBehalf, fieldErr := onBehalfOf(obj)
	switch {
	case fieldErr != nil:
		return nil, fieldErr, nil
	case !onBehalf && rec.CreatedBy != nil:
		return nil, field.Forbidden(admissionPath.Child("createdBy"), fmt.Sprintf(
			"must be unset: the execution is not created on behalf of anyone (%s)", v1alpha1.AnnotationOnBehalfOf)), nil
	case !onBehalf && !equality.Semantic.DeepEqual(rec.Requester, creator):
		return nil, field.Forbidden(admissionPath.Child("requester"), "must be the user who creates the execution"), nil
	case !onBehalf:
		return &rec.Requester, nil, nil
	case rec.CreatedBy == nil || !equality.Semantic.DeepEqual(*rec.CreatedBy, creator):
		return nil, field.Forbidden(admissionPath.Child("createdBy"), "must be the user who creates the execution"), nil
	case !equality.Semantic.DeepEqual(rec.Requester, named):
		return nil, field.Forbidden(admissionPath.Child("requester"), fmt.Sprintf(
			"must be the user the execution is created for (%s and %s)", v1alpha1.AnnotationOnBehalfOf, v1alpha1.AnnotationOnBehalfOfGroups)), nil
	}
	// The defaulting webhook checked this too; it is asked again (from the cache) so that a record
	// that reached here without it is still bound by the creator's impersonation rights.
	if fieldErr, err := checkImpersonation(ctx, v.Reviewer, creator, named); err != nil || fieldErr != nil {
		return nil, fieldErr, err
	}
	return &rec.Requester, nil, nil
}

// UserInfoOf converts the API server's record of a user to the execution's.
func UserInfoOf(u authenticationv1.UserInfo) v1alpha1.UserInfo {
	out := v1alpha1.UserInfo{Username: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		out.Extra = make(map[string]v1alpha1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			out.Extra[k] = v1alpha1.ExtraValue(v)
		}
	}
	return out
}

// AdmissionRecorder records, on a new execution, who asked for it and which generation of its
// template was checked (spec.admission). The requester is the user who creates it, or the user
// its kubernaut.io/on-behalf-of annotations name when the creator may impersonate that user and
// its groups (the creator is then recorded as createdBy; otherwise the execution is refused). A
// value the client sent is replaced; on an update the stored record is kept, so a client that
// re-applies the execution without it (server-side apply drops fields its manifest omits)
// neither loses nor changes it. It answers with a JSON patch of that one field, so nothing else
// of the request is touched.
type AdmissionRecorder struct {
	// Reader reads ActionTemplates (the manager's cache).
	Reader client.Reader
	// Reviewer answers the creator's SubjectAccessReviews for impersonation.
	Reviewer access.Creator
}

// +kubebuilder:webhook:path=/mutate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution,mutating=true,failurePolicy=fail,sideEffects=None,groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=create;update,versions=v1alpha1,name=mkubernetesexecution.kubernaut.io,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=Never,patch=`{"matchConditions":[{"name":"create-or-spec-change","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec"}]}`

// AdmissionRecorderPath is where the API server sends the requests AdmissionRecorder answers.
const AdmissionRecorderPath = "/mutate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution"

var _ admission.Handler = &AdmissionRecorder{}

// Handle answers one admission request.
func (d *AdmissionRecorder) Handle(ctx context.Context, req admission.Request) admission.Response {
	obj := &v1alpha1.KubernetesExecution{}
	if err := json.Unmarshal(req.Object.Raw, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the execution: %w", err))
	}
	var want *v1alpha1.AdmissionRecord
	switch req.Operation {
	case admissionv1.Create:
		creator := UserInfoOf(req.UserInfo)
		want = &v1alpha1.AdmissionRecord{Requester: creator}
		named, onBehalf, fieldErr := onBehalfOf(obj)
		if fieldErr == nil && onBehalf {
			var err error
			if fieldErr, err = checkImpersonation(ctx, d.Reviewer, creator, named); err != nil {
				return admission.Errored(http.StatusInternalServerError, err)
			}
			want = &v1alpha1.AdmissionRecord{Requester: named, CreatedBy: &creator}
		}
		if fieldErr != nil {
			return denied(invalid(obj, field.ErrorList{fieldErr}))
		}
		tpl := &v1alpha1.ActionTemplate{}
		// Read without a copy, as the validator reads it: only its UID and generation are used.
		switch err := d.Reader.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl, client.UnsafeDisableDeepCopy); {
		case err == nil:
			want.TemplateUID, want.TemplateGeneration = tpl.UID, tpl.Generation
		case !apierrors.IsNotFound(err):
			return admission.Errored(http.StatusInternalServerError, err)
		}
	case admissionv1.Update:
		old := &v1alpha1.KubernetesExecution{}
		if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the stored execution: %w", err))
		}
		want = old.Spec.Admission
	default:
		return admission.Allowed("")
	}
	switch {
	case equality.Semantic.DeepEqual(obj.Spec.Admission, want):
		return admission.Allowed("")
	case want == nil:
		return admission.Patched("", jsonpatch.NewOperation("remove", "/spec/admission", nil))
	}
	return admission.Patched("", jsonpatch.NewOperation("add", "/spec/admission", want))
}

// denied answers a request with err, an API status error, as the API server's own: kubectl
// prints its reason and each cause's field.
func denied(err error) admission.Response {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return admission.Denied(err.Error())
	}
	result := status.Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &result}}
}

func describeTarget(obj *v1alpha1.KubernetesExecution) string {
	t := obj.Spec.Action.Target
	if t.Namespace == "" {
		return fmt.Sprintf("%s %s", t.ResourceKind, t.ResourceName)
	}
	return fmt.Sprintf("%s %s/%s", t.ResourceKind, t.Namespace, t.ResourceName)
}

// rejections counts the causes of rejected requests, by resource and field error type.
var rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubernaut_admission_rejections_total",
	Help: "Causes of requests the webhooks rejected, by resource and reason (the field error's type).",
}, []string{"resource", "reason"})

func init() { metrics.Registry.MustRegister(rejections) }

// invalid wraps field errors as the API server's own Invalid error, so kubectl prints each cause
// with its path, and counts them.
func invalid(obj client.Object, errs field.ErrorList) error {
	kind, resource := "KubernetesExecution", "kubernetesexecutions"
	if _, ok := obj.(*v1alpha1.ActionTemplate); ok {
		kind, resource = "ActionTemplate", "actiontemplates"
	}
	for _, e := range errs {
		rejections.WithLabelValues(resource, string(e.Type)).Inc()
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(kind).GroupKind(), obj.GetName(), errs)
}
