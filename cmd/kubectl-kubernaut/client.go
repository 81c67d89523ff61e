package main

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// executionsResource is the KubernetesExecution resource's name in the API.
const executionsResource = "kubernetesexecutions"

// scheme knows the executor's types, the only ones the plugin reads and writes (and metav1's
// list options and watch events for their group).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err) // the project's own types; adding them cannot fail
	}
	return s
}()

// executions is a typed client for KubernetesExecutions, as a generated clientset would be, on
// client-go's REST client: the plugin needs four calls, not a framework.
type executions struct {
	rc *rest.RESTClient
}

func newExecutions(cfg *rest.Config) (*executions, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.GroupVersion = &v1alpha1.GroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = "kubectl-kubernaut/" + version
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &executions{rc: rc}, nil
}

func (e *executions) get(ctx context.Context, ns, name string) (*v1alpha1.KubernetesExecution, error) {
	obj := &v1alpha1.KubernetesExecution{}
	err := e.rc.Get().Namespace(ns).Resource(executionsResource).Name(name).Do(ctx).Into(obj)
	return obj, err
}

func (e *executions) create(ctx context.Context, obj *v1alpha1.KubernetesExecution) (*v1alpha1.KubernetesExecution, error) {
	created := &v1alpha1.KubernetesExecution{}
	err := e.rc.Post().Namespace(obj.Namespace).Resource(executionsResource).Body(obj).Do(ctx).Into(created)
	return created, err
}

// patchConditions replaces obj's status conditions with conditions, on the version of obj given:
// the API server refuses the patch (Conflict) when the stored object's resourceVersion differs.
// A merge patch replaces a list whole, so conditions must be obj's own list with only the
// intended change.
func (e *executions) patchConditions(ctx context.Context, obj *v1alpha1.KubernetesExecution, conditions []metav1.Condition) (*v1alpha1.KubernetesExecution, error) {
	body, err := conditionsPatch(obj.ResourceVersion, conditions)
	if err != nil {
		return nil, err
	}
	patched := &v1alpha1.KubernetesExecution{}
	err = e.rc.Patch(types.MergePatchType).Namespace(obj.Namespace).Resource(executionsResource).Name(obj.Name).
		SubResource("status").Body(body).Do(ctx).Into(patched)
	return patched, err
}

// conditionsPatch is the merge patch that sets status.conditions, valid only on resourceVersion.
func conditionsPatch(resourceVersion string, conditions []metav1.Condition) ([]byte, error) {
	if resourceVersion == "" {
		return nil, fmt.Errorf("no resourceVersion to patch against")
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": resourceVersion},
		"status":   map[string]any{"conditions": conditions},
	})
}

// watch watches the one execution ns/name from resourceVersion on.
func (e *executions) watch(ctx context.Context, ns, name, resourceVersion string) (watch.Interface, error) {
	opts := metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: resourceVersion,
		Watch:           true,
	}
	return e.rc.Get().Namespace(ns).Resource(executionsResource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}
