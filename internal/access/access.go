// Package access asks the API server, through SubjectAccessReviews, whether a user holds the
// permissions an execution's grant would give its action. The admission webhook asks for the
// user making the request; the controller asks again, for the user recorded at admission, before
// every attempt.
package access

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
)

// Creator creates SubjectAccessReviews. A client.Client does, through the API server.
type Creator interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

// Missing returns the permissions user does not hold, one SubjectAccessReview each, in the
// order given. An error means the API server could not answer: callers fail closed.
func Missing(ctx context.Context, c Creator, user v1alpha1.UserInfo, perms []grants.Permission) ([]grants.Permission, error) {
	var missing []grants.Permission
	for _, p := range perms {
		sar := Review(user, p)
		if err := c.Create(ctx, sar); err != nil {
			return nil, fmt.Errorf("asking whether %s may %s: %w", user.Username, p, err)
		}
		if !sar.Status.Allowed {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// Review is the SubjectAccessReview that asks whether user holds p.
func Review(user v1alpha1.UserInfo, p grants.Permission) *authorizationv1.SubjectAccessReview {
	var extra map[string]authorizationv1.ExtraValue
	if user.Extra != nil {
		extra = make(map[string]authorizationv1.ExtraValue, len(user.Extra))
		for k, v := range user.Extra {
			extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: p.Namespace, Verb: p.Verb, Group: p.Group,
			Resource: p.Resource, Subresource: p.Subresource, Name: p.Name,
		},
	}}
}

// Describe lists permissions for a message: "patch nodes "n1" (cluster-wide), list pods ...".
func Describe(perms []grants.Permission) string {
	s := ""
	for i, p := range perms {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

// ClustersResource is the resource whose custom verb "execute", on a registered target
// cluster's name, lets a requester act in that cluster through the executor. Nothing serves it:
// it exists only in RBAC rules, as the hub's administrators grant it.
const ClustersResource = "clusters"

// ExecuteOnCluster is the permission to act in the target cluster called name through the
// executor, checked on the executor's own cluster.
func ExecuteOnCluster(name string) grants.Permission {
	return grants.Permission{Verb: "execute", Group: v1alpha1.GroupVersion.Group, Resource: ClustersResource, Name: name}
}
