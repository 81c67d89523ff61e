package main

import (
	"k8s.io/client-go/kubernetes"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// prepare reads the action's parameters into params (nil for none), checks the target's kind,
// and returns a client acting as the action's own identity.
func prepare(req *sdk.Request, params any, kinds ...string) (kubernetes.Interface, error) {
	if params == nil {
		params = &struct{}{}
	}
	if err := req.Decode(params); err != nil {
		return nil, err
	}
	if err := req.RequireKind(kinds...); err != nil {
		return nil, err
	}
	return req.Clientset()
}

func ptrTo[T any](v T) *T { return &v }
