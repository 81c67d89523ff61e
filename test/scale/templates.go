package scale

import (
	"encoding/json"
	"fmt"
)

// The templates the benchmark runs. Their pods are finished by kwok, which reads the outcome
// from the container's first argument (see test/localcluster/kwok): no process runs per pod.
const (
	// NoopTemplate does nothing; its outcome parameter picks how kwok ends its pod.
	NoopTemplate = "bench-noop"
	// WideTemplate has a 10 KB parameter schema, for the admission figures.
	WideTemplate = "bench-wide"
	// targetName is the ConfigMap every benchmark execution targets, one in each namespace.
	targetName = "bench-target"
)

// ceilingFragment lets the benchmark's templates grant what they ask for (read one ConfigMap).
const ceilingFragment = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kubernaut-bench-ceiling
  labels:
    kubernaut.io/aggregate-to-ceiling: "true"
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get]
`

// templateManifest is an ActionTemplate named name whose args are args and whose parameter
// schema is schemaJSON (JSON is YAML).
func templateManifest(name, args, schemaJSON string) string {
	return fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: ActionTemplate
metadata:
  name: %s
spec:
  description: Does nothing. In the benchmark, kwok ends its pod with the outcome its first argument names.
  # It changes nothing, so the executions of one namespace, which share a target, run side by side.
  mutating: false
  image: kubernaut-actions
  args: %s
  targetKinds: [ConfigMap]
  parameters: %s
  rbac:
    scope: Namespaced
    rules:
      - apiGroups: [""]
        resources: [configmaps]
        verbs: [get]
  defaultTimeout: 5m
  maxTimeout: 30m
  retryPolicy:
    idempotent: true
    nonRetryableExitCodes: [2]
    maxRetries: 3
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 64Mi}
`, name, args, schemaJSON)
}

// noopSchema lets an execution choose its outcome; "ok" when it does not.
const noopSchema = `{"type":"object","additionalProperties":false,"properties":{"outcome":{"type":"string","enum":["ok","fail","fail-twice","hang","exit-2"],"default":"ok"}}}`

// wideSchema returns a parameter schema of at least size bytes (bounded integer properties) and
// parameters that satisfy it.
func wideSchema(size int) (schemaJSON string, params map[string]any) {
	props := map[string]any{}
	params = map[string]any{}
	for i := 0; ; i++ {
		b, err := json.Marshal(props)
		if err != nil {
			panic(err) // maps of strings and numbers always encode
		}
		if len(b) >= size {
			break
		}
		name := fmt.Sprintf("p%03d", i)
		props[name] = map[string]any{"type": "integer", "minimum": 0, "maximum": 1000, "description": "a bounded integer parameter"}
		params[name] = i
	}
	b, err := json.Marshal(map[string]any{"type": "object", "additionalProperties": false, "properties": props})
	if err != nil {
		panic(err)
	}
	return string(b), params
}
