package localcluster

import "path/filepath"

// Image repositories of the project, as the chart and the templates name them.
const (
	// ActionsImage runs the actions binary.
	ActionsImage = "ghcr.io/kubernaut/kubernaut-actions"
	// ManagerImage runs the manager.
	ManagerImage = "ghcr.io/kubernaut/kubernaut-executor"
	// LabelDeploymentImage is the image examples/label-deployment's template names, as if its
	// author had built and pushed it.
	LabelDeploymentImage = "registry.example.com/sre/label-deployment"
)

// ProjectImages maps the project's images, and the example action's, to the binaries built into
// binDir by `make build`.
func ProjectImages(binDir string) map[string]string {
	return map[string]string{
		ActionsImage:         filepath.Join(binDir, "kubernaut-actions"),
		"kubernaut-actions":  filepath.Join(binDir, "kubernaut-actions"),
		ManagerImage:         filepath.Join(binDir, "manager"),
		LabelDeploymentImage: filepath.Join(binDir, "label-deployment"),
	}
}
