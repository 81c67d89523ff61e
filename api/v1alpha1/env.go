package v1alpha1

// Environment variables the executor sets on every action container: the contract between the
// executor and an action's image. A template's env cannot override them.
const (
	// EnvActionType is the action's type (its template's name).
	EnvActionType = "ACTION_TYPE"
	// EnvTargetNamespace is the target's namespace, empty for cluster-scoped targets.
	EnvTargetNamespace = "TARGET_NAMESPACE"
	// EnvTargetKind is the target's kind.
	EnvTargetKind = "TARGET_KIND"
	// EnvTargetName is the target's name.
	EnvTargetName = "TARGET_NAME"
	// EnvActionParameters is the parameters, a JSON object with the schema's defaults applied.
	EnvActionParameters = "ACTION_PARAMETERS"
	// EnvDryRun is "true" when the action must change nothing.
	EnvDryRun = "DRY_RUN"
	// EnvExecutionName is the KubernetesExecution's name.
	EnvExecutionName = "EXECUTION_NAME"
	// EnvExecutionNamespace is the KubernetesExecution's namespace.
	EnvExecutionNamespace = "EXECUTION_NAMESPACE"
	// EnvExecutionAttempt is the attempt's number, from 1.
	EnvExecutionAttempt = "EXECUTION_ATTEMPT"
)

// ReservedEnv are the names above.
var ReservedEnv = map[string]bool{
	EnvActionType: true, EnvTargetNamespace: true, EnvTargetKind: true, EnvTargetName: true,
	EnvActionParameters: true, EnvDryRun: true, EnvExecutionName: true, EnvExecutionNamespace: true,
	EnvExecutionAttempt: true,
}
