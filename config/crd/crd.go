// Package crd holds the CRDs that make manifests generates from api/, for the programs that
// need them offline: kubectl kubernaut validate checks templates against the ActionTemplate
// CRD's schema as the API server would.
package crd

import _ "embed"

// ActionTemplates is the ActionTemplate CRD, as YAML.
//
//go:embed kubernetesexecution.kubernaut.io_actiontemplates.yaml
var ActionTemplates []byte
