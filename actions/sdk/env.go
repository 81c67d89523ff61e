package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Env is what the executor tells an action through its environment (v1alpha1.ReservedEnv).
type Env struct {
	// ActionType is the ActionTemplate's name.
	ActionType string
	// Namespace is the target's namespace, empty for a cluster-scoped target.
	Namespace string
	// Kind and Name name the target.
	Kind, Name string
	// ExecutionName and ExecutionNamespace name the KubernetesExecution.
	ExecutionName, ExecutionNamespace string
	// DryRun is true when the action must change nothing.
	DryRun bool
	// Attempt is the attempt's number, from 1.
	Attempt int
	// Parameters is a JSON object, with the template schema's defaults applied; {} when there
	// are none.
	Parameters json.RawMessage
}

// ReadEnv reads the environment of this process.
func ReadEnv() (Env, error) { return EnvFrom(os.Getenv) }

// EnvFrom reads an Env through getenv. Malformed values are errors that name the variable.
func EnvFrom(getenv func(string) string) (Env, error) {
	e := Env{
		ActionType:         getenv(v1alpha1.EnvActionType),
		Namespace:          getenv(v1alpha1.EnvTargetNamespace),
		Kind:               getenv(v1alpha1.EnvTargetKind),
		Name:               getenv(v1alpha1.EnvTargetName),
		ExecutionName:      getenv(v1alpha1.EnvExecutionName),
		ExecutionNamespace: getenv(v1alpha1.EnvExecutionNamespace),
		Parameters:         json.RawMessage(getenv(v1alpha1.EnvActionParameters)),
		Attempt:            1,
	}
	if len(bytes.TrimSpace(e.Parameters)) == 0 {
		e.Parameters = json.RawMessage("{}")
	}
	if v := getenv(v1alpha1.EnvDryRun); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return e, BadInput("%s=%q is not a boolean", v1alpha1.EnvDryRun, v)
		}
		e.DryRun = b
	}
	if v := getenv(v1alpha1.EnvExecutionAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return e, BadInput("%s=%q is not a positive number", v1alpha1.EnvExecutionAttempt, v)
		}
		e.Attempt = n
	}
	return e, nil
}

// Decode reads the parameters into v, a pointer to a struct (or map), refusing fields v does
// not have and anything after the object: a parameter the action does not know is an error,
// never ignored. The error is a BadInput naming the variable and the field.
func (e Env) Decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(e.Parameters))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadInput("%s: %v", v1alpha1.EnvActionParameters, err)
	}
	if dec.More() {
		return BadInput("%s: more than one JSON value", v1alpha1.EnvActionParameters)
	}
	return nil
}

// RequireKind returns a BadInput unless the target is named and of one of kinds.
func (e Env) RequireKind(kinds ...string) error {
	if e.Name == "" {
		return BadInput("%s is empty", v1alpha1.EnvTargetName)
	}
	for _, k := range kinds {
		if e.Kind == k {
			return nil
		}
	}
	return BadInput("%s %q is not one of %v", v1alpha1.EnvTargetKind, e.Kind, kinds)
}

// Verb picks the words for a change, honest about dry runs: done ("scaled") normally, would
// ("would scale") in a dry run.
func (e Env) Verb(done, would string) string {
	if e.DryRun {
		return would
	}
	return done
}

// Target is "namespace/name", or the name alone for a cluster-scoped target, for messages.
func (e Env) Target() string {
	if e.Namespace == "" {
		return e.Name
	}
	return e.Namespace + "/" + e.Name
}

// String describes the target for messages: "Deployment shop/web".
func (e Env) String() string { return fmt.Sprintf("%s %s", e.Kind, e.Target()) }
