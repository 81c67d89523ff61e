package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// EventVolume says which Events the controllers record.
type EventVolume string

const (
	// EventsAll records every Event: Normal ones for each step of an execution (Progressing,
	// Succeeded, AuditLogged) and Warning ones for what went wrong.
	EventsAll EventVolume = "all"
	// EventsWarnings records only Warning Events: a failed or retried attempt, a timeout, an
	// audit event that could not be delivered, a predefined action that cannot be installed.
	// Under load this spares the API server (and etcd) a write or two per execution.
	EventsWarnings EventVolume = "warnings"
)

// ParseEventVolume reads the value of the manager's --events flag.
func ParseEventVolume(s string) (EventVolume, error) {
	switch v := EventVolume(s); v {
	case EventsAll, EventsWarnings:
		return v, nil
	}
	return "", fmt.Errorf("%q is neither %q nor %q", s, EventsAll, EventsWarnings)
}

// Recorder returns the recorder the controllers record their Events with: r itself for
// EventsAll (and the zero value), r without the Normal Events for EventsWarnings.
func (v EventVolume) Recorder(r events.EventRecorder) events.EventRecorder {
	if v == EventsWarnings {
		return warningsOnly{r}
	}
	return r
}

// warningsOnly records only Warning Events.
type warningsOnly struct{ events.EventRecorder }

// Eventf records the Event if it is a Warning, and drops it otherwise.
func (w warningsOnly) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if eventtype != corev1.EventTypeWarning {
		return
	}
	w.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}
