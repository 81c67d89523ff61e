package main

import (
	"fmt"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemavalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/config/crd"
)

// templateSchema is the ActionTemplate CRD's schema for v1alpha1, compiled as the API server
// compiles it.
type templateSchema struct {
	validator  schemavalidation.SchemaValidator
	structural *structuralschema.Structural
}

// loadTemplateSchema compiles the embedded CRD once; it is the same for every template.
var loadTemplateSchema = sync.OnceValues(func() (*templateSchema, error) {
	def := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(crd.ActionTemplates, def); err != nil {
		return nil, fmt.Errorf("the ActionTemplate CRD: %w", err)
	}
	for _, v := range def.Spec.Versions {
		if v.Name != v1alpha1.GroupVersion.Version || v.Schema == nil {
			continue
		}
		internal := &apiextensions.JSONSchemaProps{}
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
			return nil, fmt.Errorf("the ActionTemplate CRD's schema: %w", err)
		}
		validator, _, err := schemavalidation.NewSchemaValidator(internal)
		if err != nil {
			return nil, fmt.Errorf("the ActionTemplate CRD's schema: %w", err)
		}
		structural, err := structuralschema.NewStructural(internal)
		if err != nil {
			return nil, fmt.Errorf("the ActionTemplate CRD's schema: %w", err)
		}
		return &templateSchema{validator: validator, structural: structural}, nil
	}
	return nil, fmt.Errorf("the ActionTemplate CRD has no schema for %s", v1alpha1.GroupVersion.Version)
})

// schemaErrors returns what the API server refuses in a template document, given as JSON, before
// any webhook sees it: a missing or malformed name, and every breach of the CRD's schema (required
// fields, types, patterns, enums, bounds, list sizes, duplicates in sets and maps). The API server
// applies the schema's defaults first; none of them can make a template invalid, so they are not
// applied.
func schemaErrors(doc []byte) (field.ErrorList, error) {
	s, err := loadTemplateSchema()
	if err != nil {
		return nil, err
	}
	// Numbers as the API server decodes them, int64 or float64, so that integer fields validate.
	var obj map[string]any
	if err := utiljson.Unmarshal(doc, &obj); err != nil {
		return nil, err
	}
	var errs field.ErrorList
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := utiljson.Unmarshal(doc, &meta); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("metadata"), field.OmitValueType{}, err.Error()))
	} else {
		errs = apivalidation.ValidateObjectMeta(&meta.Metadata, false, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	}
	errs = append(errs, schemavalidation.ValidateCustomResource(nil, obj, s.validator)...)
	return append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, obj)...), nil
}
