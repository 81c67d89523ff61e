package webhooks

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
)

var (
	onBehalfOfPath       = field.NewPath("metadata", "annotations").Key(v1alpha1.AnnotationOnBehalfOf)
	onBehalfOfGroupsPath = field.NewPath("metadata", "annotations").Key(v1alpha1.AnnotationOnBehalfOfGroups)
)

// maxOnBehalfOfGroups is the most groups an execution may name. The requester admission policy
// asks the API server's authorizer once for each, and the API server bounds what one policy may
// ask per request.
const maxOnBehalfOfGroups = 16

// onBehalfOf returns the identity an execution is created for, as its annotations name it: the
// user of kubernaut.io/on-behalf-of and the groups of kubernaut.io/on-behalf-of-groups (split at
// commas, blanks trimmed, empty items dropped, as the requester admission policy splits them).
// named is false when the execution names no one, and the creator is the requester.
func onBehalfOf(obj *v1alpha1.KubernetesExecution) (user v1alpha1.UserInfo, named bool, err *field.Error) {
	name, named := obj.Annotations[v1alpha1.AnnotationOnBehalfOf]
	groupList, hasGroups := obj.Annotations[v1alpha1.AnnotationOnBehalfOfGroups]
	switch {
	case !named && hasGroups:
		return user, false, field.Forbidden(onBehalfOfGroupsPath, fmt.Sprintf("names groups without a user: set %s too", v1alpha1.AnnotationOnBehalfOf))
	case !named:
		return user, false, nil
	case name == "":
		return user, true, field.Required(onBehalfOfPath, "must name the user the execution is created for")
	}
	user.Username = name
	for _, g := range strings.Split(groupList, ",") {
		if g = strings.TrimSpace(g); g != "" {
			user.Groups = append(user.Groups, g)
		}
	}
	if n := len(user.Groups); n > maxOnBehalfOfGroups {
		return user, true, field.TooMany(onBehalfOfGroupsPath, n, maxOnBehalfOfGroups)
	}
	return user, true, nil
}

// impersonation is what Kubernetes asks of a client that impersonates user: impersonate on
// the user and on each of its groups.
func impersonation(user v1alpha1.UserInfo) []grants.Permission {
	perms := []grants.Permission{{Verb: "impersonate", Resource: "users", Name: user.Username}}
	for _, g := range user.Groups {
		perms = append(perms, grants.Permission{Verb: "impersonate", Resource: "groups", Name: g})
	}
	return perms
}

// checkImpersonation returns a field error naming what creator may not impersonate of user, nil
// when they may impersonate all of it. Acting on someone's behalf takes exactly the right that
// would let the creator act as them directly (kubectl --as), so the executor gives no one a way
// around Kubernetes' own impersonation RBAC. An error means the API server could not answer.
func checkImpersonation(ctx context.Context, reviewer access.Creator, creator, user v1alpha1.UserInfo) (*field.Error, error) {
	missing, err := access.Missing(ctx, reviewer, creator, impersonation(user))
	if err != nil || len(missing) == 0 {
		return nil, err
	}
	return field.Forbidden(onBehalfOfPath, fmt.Sprintf(
		"%s may not %s; an execution on behalf of %s needs the right to impersonate them and each of their groups",
		creator.Username, access.Describe(missing), user.Username)), nil
}
