package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// maxNameLength is the longest Job name the executor creates: a Job's name is copied into the
// job-name label of its pods, and label values are at most 63 characters.
const maxNameLength = 63

// JobName returns the name of an execution's Job for one attempt: "<execution>-<attempt>".
// A name that would exceed 63 characters keeps a prefix of the execution's name and replaces
// the rest with a hash of the full name, so distinct executions keep distinct Job names and the
// same execution and attempt always give the same name (a restarted manager finds its Jobs).
func JobName(execution string, attempt int32) string {
	return shorten(execution, "-"+strconv.Itoa(int(attempt)))
}

// LabelValue returns name if it is a valid label value length, else a hashed short form.
func LabelValue(name string) string { return shorten(name, "") }

// shorten returns name+suffix when it fits in maxNameLength, else a prefix of name, a dash,
// eight hex digits of the SHA-256 of name, and suffix.
func shorten(name, suffix string) string { return shortenTo(name, suffix, maxNameLength) }

// shortenTo is shorten with another length limit.
func shortenTo(name, suffix string, limit int) string {
	if len(name)+len(suffix) <= limit {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	hash := hex.EncodeToString(sum[:])[:8]
	keep := limit - len(suffix) - len(hash) - 1
	// Label values and names must end in an alphanumeric character.
	prefix := strings.TrimRight(name[:keep], "-._")
	return prefix + "-" + hash + suffix
}

// TemplateClusterRoleName is the ClusterRole that holds a template's rules once they are
// checked against the ceiling.
func TemplateClusterRoleName(template string) string { return "kubernaut-action-" + template }

// ExecutionServiceAccountName is the ServiceAccount of one execution, in the execution's
// namespace: "kubernaut-exec-<execution>", shortened with a hash to at most 63 characters.
// Each execution has its own, so no two executions ever share a grant or a token.
func ExecutionServiceAccountName(execution string) string {
	return shorten("kubernaut-exec-"+execution, "")
}
