package nodeagent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resolveEnv turns a container's env into NAME=value pairs, resolving the field, ConfigMap and
// Secret references a kubelet resolves.
func (a *Agent) resolveEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string) ([]string, error) {
	var out []string
	for _, e := range c.Env {
		v := e.Value
		if src := e.ValueFrom; src != nil {
			var err error
			if v, err = a.resolveSource(ctx, pod, src, podIP); err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		}
		out = append(out, e.Name+"="+v)
	}
	return out, nil
}

func (a *Agent) resolveSource(ctx context.Context, pod *corev1.Pod, src *corev1.EnvVarSource, podIP string) (string, error) {
	switch {
	case src.FieldRef != nil:
		switch src.FieldRef.FieldPath {
		case "metadata.name":
			return pod.Name, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		case "metadata.uid":
			return string(pod.UID), nil
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.podIP", "status.hostIP":
			return podIP, nil
		}
		return "", fmt.Errorf("field %s is not supported by the local node agent", src.FieldRef.FieldPath)
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := a.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Data[ref.Key], nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := a.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[ref.Key]), nil
	}
	return "", fmt.Errorf("unsupported value source")
}
