package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// Env is what the executor tells an action through its environment.
type Env struct {
	ActionType string
	Namespace  string
	Kind       string
	Name       string
	DryRun     bool
	Attempt    int
	// Parameters is ACTION_PARAMETERS, a JSON object with the schema's defaults applied.
	Parameters json.RawMessage
}

func readEnv() (Env, error) {
	e := Env{
		ActionType: os.Getenv("ACTION_TYPE"),
		Namespace:  os.Getenv("TARGET_NAMESPACE"),
		Kind:       os.Getenv("TARGET_KIND"),
		Name:       os.Getenv("TARGET_NAME"),
		Parameters: json.RawMessage(os.Getenv("ACTION_PARAMETERS")),
		Attempt:    1,
	}
	if len(e.Parameters) == 0 {
		e.Parameters = json.RawMessage("{}")
	}
	if v := os.Getenv("DRY_RUN"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return e, fmt.Errorf("DRY_RUN=%q is not a boolean", v)
		}
		e.DryRun = b
	}
	if v := os.Getenv("EXECUTION_ATTEMPT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return e, fmt.Errorf("EXECUTION_ATTEMPT=%q is not a number", v)
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
		return fmt.Errorf("ACTION_PARAMETERS: %w", err)
	}
	return nil
}
