package access

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// IdentityMap is a target cluster's identity map (the cluster Secret's identities key): the
// hub's usernames and groups, each to the name the target cluster knows it by. A requester is
// checked on the target as their mapped username and mapped groups; what the map does not name
// is dropped, and a requester of whom nothing is mapped has no identity there and is refused.
// Without a map, a requester is checked there under their own name and groups (a fleet with one
// identity provider).
type IdentityMap struct {
	Users  map[string]string `json:"users,omitempty"`
	Groups map[string]string `json:"groups,omitempty"`
}

// mastersGroup is Kubernetes' group that bypasses authorization: mapping requesters to it would
// make every one of them an administrator of the target in the executor's eyes.
const mastersGroup = "system:masters"

// everyone reports whether group is one Kubernetes puts every user, or every ServiceAccount of
// every namespace, in.
func everyone(group string) bool {
	return group == "system:authenticated" || group == "system:unauthenticated" || group == "system:serviceaccounts"
}

// ParseIdentityMap reads an identity map, strictly: unknown keys, empty names and a mapping to
// system:masters are errors naming the entry.
func ParseIdentityMap(raw []byte) (*IdentityMap, error) {
	m := &IdentityMap{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		return nil, err
	}
	var errs field.ErrorList
	for _, part := range []struct {
		name string
		m    map[string]string
	}{{"users", m.Users}, {"groups", m.Groups}} {
		for from, to := range part.m {
			p := field.NewPath(part.name).Key(from)
			switch {
			case from == "":
				errs = append(errs, field.Invalid(field.NewPath(part.name), from, "a hub name must not be empty"))
			case to == "":
				errs = append(errs, field.Required(p, "the name on the target cluster"))
			case part.name == "groups" && everyone(from):
				errs = append(errs, field.Forbidden(p, "a group every user (or every ServiceAccount) is in would give everyone an identity on the target"))
			case part.name == "groups" && to == mastersGroup:
				errs = append(errs, field.Forbidden(p, "requesters must not be mapped to "+mastersGroup+", which bypasses authorization"))
			}
		}
	}
	if len(m.Users)+len(m.Groups) == 0 {
		errs = append(errs, field.Required(field.NewPath("users"), "an identity map maps at least one user or group"))
	}
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return m, nil
}

// Identity returns who user is on the target cluster: themselves without a map, else their mapped
// username and groups (their UID and extra attributes, which are the hub's, are dropped).
func (m *IdentityMap) Identity(user v1alpha1.UserInfo) (v1alpha1.UserInfo, error) {
	if m == nil {
		return user, nil
	}
	out := v1alpha1.UserInfo{Username: m.Users[user.Username]}
	for _, g := range user.Groups {
		if to, ok := m.Groups[g]; ok && !slices.Contains(out.Groups, to) {
			out.Groups = append(out.Groups, to)
		}
	}
	if out.Username == "" && len(out.Groups) == 0 {
		return out, fmt.Errorf("the identity map of its Secret names neither %s nor any of their groups", user.Username)
	}
	return out, nil
}

// DescribeAs names a requester for a message: "alice", or "alice (as alice-east on cluster east)"
// when they are checked there under another name.
func DescribeAs(hub, there v1alpha1.UserInfo, cluster string) string {
	if there.Username == hub.Username && slices.Equal(there.Groups, hub.Groups) {
		return hub.Username
	}
	as := there.Username
	if as == "" {
		as = fmt.Sprintf("groups %v", there.Groups)
	}
	return fmt.Sprintf("%s (as %s on cluster %q)", hub.Username, as, cluster)
}
