package controllers

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/render"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

const (
	// ActionContainerName is the name of the container that runs the action.
	ActionContainerName = "action"

	// actionUID is the user and group the action runs as when its image does not say.
	actionUID = 65532
)

// defaultResources apply to actions whose template sets none: enough for a client-go binary.
var defaultResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	},
	Limits: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("500m"),
		corev1.ResourceMemory: resource.MustParse("128Mi"),
	},
}

// jobInput is everything buildJob needs; it is pure so that the Job an execution gets can be
// tested without an API server.
type jobInput struct {
	Execution *v1alpha1.KubernetesExecution
	Template  *v1alpha1.ActionTemplate
	Attempt   int32
	// Remaining is the time left before the execution's timeout.
	Remaining time.Duration
	// ServiceAccount is the execution's own ServiceAccount, which holds its grant.
	ServiceAccount string
	// Images maps template image names to the references to run.
	Images map[string]string
}

// buildJob returns the Job for one attempt. The owner reference is set by the caller.
func buildJob(in jobInput) (*batchv1.Job, error) {
	obj, tpl := in.Execution, in.Template
	target := obj.Spec.Action.Target

	params, err := render.Parameters(validation.RawParameters(obj), validation.SchemaBytes(tpl))
	if err != nil {
		return nil, err
	}
	paramsJSON, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("encoding parameters: %w", err)
	}
	data := &render.Data{
		Parameters: params,
		Target:     render.Target{Namespace: target.Namespace, Kind: target.ResourceKind, Name: target.ResourceName},
		Execution:  render.Execution{Name: obj.Name, Namespace: obj.Namespace, Attempt: in.Attempt},
		DryRun:     obj.Spec.DryRun,
	}
	rendered, errs := render.Container(tpl.Spec.Command, tpl.Spec.Args, tpl.Spec.Env, data)
	if len(errs) > 0 {
		return nil, fmt.Errorf("rendering ActionTemplate %q: %w", tpl.Name, errs.ToAggregate())
	}
	command, args := rendered.Command, rendered.Args
	var env []corev1.EnvVar
	for _, e := range rendered.Env {
		if !v1alpha1.ReservedEnv[e.Name] {
			env = append(env, e)
		}
	}
	env = append(env,
		corev1.EnvVar{Name: v1alpha1.EnvActionType, Value: obj.Spec.Action.Type},
		corev1.EnvVar{Name: v1alpha1.EnvTargetNamespace, Value: target.Namespace},
		corev1.EnvVar{Name: v1alpha1.EnvTargetKind, Value: target.ResourceKind},
		corev1.EnvVar{Name: v1alpha1.EnvTargetName, Value: target.ResourceName},
		corev1.EnvVar{Name: v1alpha1.EnvActionParameters, Value: string(paramsJSON)},
		corev1.EnvVar{Name: v1alpha1.EnvDryRun, Value: strconv.FormatBool(obj.Spec.DryRun)},
		corev1.EnvVar{Name: v1alpha1.EnvExecutionName, Value: obj.Name},
		corev1.EnvVar{Name: v1alpha1.EnvExecutionNamespace, Value: obj.Namespace},
		corev1.EnvVar{Name: v1alpha1.EnvExecutionAttempt, Value: strconv.Itoa(int(in.Attempt))},
	)

	image := tpl.Spec.Image
	if mapped, ok := in.Images[image]; ok {
		image = mapped
	}
	resources := *defaultResources.DeepCopy()
	if tpl.Spec.Resources != nil {
		// A copy: tpl is the cache's own object (see observeTemplate), and creating the Job
		// decodes the API server's answer into the Job's maps.
		resources = *tpl.Spec.Resources.DeepCopy()
	}
	labels := map[string]string{
		v1alpha1.LabelExecution:  LabelValue(obj.Name),
		v1alpha1.LabelActionType: obj.Spec.Action.Type,
		v1alpha1.LabelAttempt:    strconv.Itoa(int(in.Attempt)),
		v1alpha1.LabelManagedBy:  v1alpha1.ManagedByValue,
	}
	// The Job controller stops the pod at the execution's deadline even if the manager is down.
	deadline := max(int64(math.Ceil(in.Remaining.Seconds())), 1)

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:      JobName(obj.Name, in.Attempt),
			Namespace: obj.Namespace,
			Labels:    labels,
		},
		Spec: batchv1.JobSpec{
			// The executor retries, with its own backoff and its own record of attempts.
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(deadline),
			// A pod lost to disruption (eviction, node drain, preemption) is not the action's
			// failure: the Job controller replaces an idempotent action's pod without counting
			// it, and fails a non-idempotent action's Job, which must never run twice.
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action:          onDisruption(tpl),
				OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
			}}},
			// No TTL yet: the Job controller's TTL would delete the Job and its pod, and with
			// it the attempt's outcome, even while the manager is down and has not read it. The
			// TTL is set once the outcome is recorded (releaseRecordedJobs).
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					ServiceAccountName:            in.ServiceAccount,
					AutomountServiceAccountToken:  ptr.To(true),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](actionUID),
						RunAsGroup:     ptr.To[int64](actionUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:    ActionContainerName,
						Image:   image,
						Command: command,
						Args:    args,
						Env:     env,
						// The action writes its result here; when it writes none and fails, the
						// kubelet puts the tail of its log here instead.
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						Resources:                resources,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							RunAsNonRoot:             ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
					}},
					Volumes: []corev1.Volume{{
						Name:         "tmp",
						VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))}},
					}},
				},
			},
		},
	}
	return job, nil
}

// onDisruption is what the Job controller does when the action's pod is disrupted: run it again
// for an idempotent action, fail the Job (and so the attempt) for one that is not.
func onDisruption(tpl *v1alpha1.ActionTemplate) batchv1.PodFailurePolicyAction {
	if p := tpl.Spec.RetryPolicy.Idempotent; p != nil && !*p {
		return batchv1.PodFailurePolicyActionFailJob
	}
	return batchv1.PodFailurePolicyActionIgnore
}
