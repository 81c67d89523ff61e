package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Env is what the executor tells an action through its environment (see v1alpha1.ReservedEnv).
type Env struct {
	ActionType string
	Namespace  string
	Kind       string
	Name       string
	DryRun     bool
	Attempt    int
	// Parameters is v1alpha1.EnvActionParameters, a JSON object with the schema's defaults applied.
	Parameters json.RawMessage
}

func readEnv() (Env, error) {
	e := Env{
		ActionType: os.Getenv(v1alpha1.EnvActionType),
		Namespace:  os.Getenv(v1alpha1.EnvTargetNamespace),
		Kind:       os.Getenv(v1alpha1.EnvTargetKind),
		Name:       os.Getenv(v1alpha1.EnvTargetName),
		Parameters: json.RawMessage(os.Getenv(v1alpha1.EnvActionParameters)),
		Attempt:    1,
	}
	if len(e.Parameters) == 0 {
		e.Parameters = json.RawMessage("{}")
	}
	if v := os.Getenv(v1alpha1.EnvDryRun); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return e, fmt.Errorf("%s=%q is not a boolean", v1alpha1.EnvDryRun, v)
		}
		e.DryRun = b
	}
	if v := os.Getenv(v1alpha1.EnvExecutionAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return e, fmt.Errorf("%s=%q is not a number", v1alpha1.EnvExecutionAttempt, v)
		}
		e.Attempt = n
	}
	return e, nil
}

// decode reads the parameters into v, rejecting unknown fields.
func (e Env) decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(e.Parameters))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", v1alpha1.EnvActionParameters, err)
	}
	return nil
}
