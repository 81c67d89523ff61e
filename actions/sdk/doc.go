// Package sdk is the action side of the executor's contract, for actions written in Go (see
// docs/authoring.md). An action is a Func; Main runs it in the Job's container:
//
//	func main() { sdk.Main(labelDeployment) }
//
//	func labelDeployment(ctx context.Context, req *sdk.Request) sdk.Result {
//		var p params
//		if err := req.Decode(&p); err != nil {
//			return sdk.Failed(err, nil)
//		}
//		cs, err := req.Clientset()
//		...
//		return sdk.Succeeded("set label team=payments", sdk.Change{...})
//	}
//
// Main reads the environment the executor sets (Env), gives the action a Request whose clients
// act as the execution's ServiceAccount and, in a dry run, make every write a server-side dry
// run; it turns a panic into a failed result, writes the result to the termination message
// within its 4 KiB (cutting the texts, never the JSON, and adding the resource usage), and exits
// with the code the result carries: 0, v1alpha1.ExitRetryable or v1alpha1.ExitFinal.
package sdk
