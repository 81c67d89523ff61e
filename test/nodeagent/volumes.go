package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mounts maps a container's mount paths to the folders that stand in for them. Without a
// container's own filesystem, a path in the container's args that lies under a mount is
// rewritten to the folder (for example --webhook-cert-dir pointing at a Secret volume).
type mounts map[string]string

// Replace rewrites the mount path that s names (alone, or after "=" in a flag), or one of its
// subpaths; the longest mount path wins.
func (m mounts) Replace(s string) string {
	prefix, value := "", s
	if i := strings.Index(s, "="); i >= 0 && strings.HasPrefix(s, "-") {
		prefix, value = s[:i+1], s[i+1:]
	}
	best := ""
	for mountPath := range m {
		if (value == mountPath || strings.HasPrefix(value, mountPath+"/")) && len(mountPath) > len(best) {
			best = mountPath
		}
	}
	if best == "" {
		return s
	}
	return prefix + m[best] + strings.TrimPrefix(value, best)
}

// mountVolumes writes the container's Secret, ConfigMap and emptyDir volumes into the pod's
// folder and returns the mount paths they stand in for.
func (p *podRun) mountVolumes(ctx context.Context, c *corev1.Container) (mounts, error) {
	m := mounts{}
	for _, vm := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range p.pod.Spec.Volumes {
			if p.pod.Spec.Volumes[i].Name == vm.Name {
				vol = &p.pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volume %q is not defined", vm.Name)
		}
		dir := filepath.Join(p.dir, "volumes", vol.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		switch {
		case vol.Secret != nil:
			s, err := p.agent.cfg.Client.CoreV1().Secrets(p.pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", vol.Name, err)
			}
			files = s.Data
		case vol.ConfigMap != nil:
			cm, err := p.agent.cfg.Client.CoreV1().ConfigMaps(p.pod.Namespace).Get(ctx, vol.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", vol.Name, err)
			}
			for k, v := range cm.Data {
				files[k] = []byte(v)
			}
		case vol.EmptyDir != nil:
		default:
			// Other volumes (projected tokens and the like) are not needed by the project's
			// images: the agent gives them a kubeconfig instead.
			continue
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return nil, err
			}
		}
		m[vm.MountPath] = dir
	}
	return m, nil
}
