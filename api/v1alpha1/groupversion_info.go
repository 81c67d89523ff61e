// Package v1alpha1 holds the kubernetesexecution.kubernaut.io/v1alpha1 API: KubernetesExecution,
// one remediation action against one target, and ActionTemplate, the definition of an action type.
// +kubebuilder:object:generate=true
// +groupName=kubernetesexecution.kubernaut.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "kubernetesexecution.kubernaut.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&KubernetesExecution{}, &KubernetesExecutionList{},
		&ActionTemplate{}, &ActionTemplateList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
