package access

import (
	"strings"
	"testing"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func TestIdentityMap(t *testing.T) {
	m, err := ParseIdentityMap([]byte(`
users:
  alice@corp.example: alice
  ci@corp.example: system:serviceaccount:ci:deployer
groups:
  sre: east-sre
  oncall: east-sre
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		user   v1alpha1.UserInfo
		want   v1alpha1.UserInfo
		refuse bool
	}{
		{"a mapped user keeps only mapped groups, without duplicates",
			v1alpha1.UserInfo{Username: "alice@corp.example", UID: "u1", Groups: []string{"sre", "oncall", "system:authenticated"}, Extra: map[string]v1alpha1.ExtraValue{"scopes": {"x"}}},
			v1alpha1.UserInfo{Username: "alice", Groups: []string{"east-sre"}}, false},
		{"a user known only through a group",
			v1alpha1.UserInfo{Username: "bob@corp.example", Groups: []string{"oncall"}},
			v1alpha1.UserInfo{Groups: []string{"east-sre"}}, false},
		{"a user mapped without groups",
			v1alpha1.UserInfo{Username: "ci@corp.example", Groups: []string{"system:authenticated"}},
			v1alpha1.UserInfo{Username: "system:serviceaccount:ci:deployer"}, false},
		{"a user the map does not name, though the target may know the same name",
			v1alpha1.UserInfo{Username: "mallory", Groups: []string{"system:authenticated", "east-sre"}},
			v1alpha1.UserInfo{}, true},
	} {
		got, err := m.Identity(tc.user)
		if tc.refuse {
			if err == nil || !strings.Contains(err.Error(), "names neither mallory nor any of their groups") {
				t.Errorf("%s: got %+v, %v; want a refusal", tc.name, got, err)
			}
			continue
		}
		if err != nil || got.Username != tc.want.Username || strings.Join(got.Groups, ",") != strings.Join(tc.want.Groups, ",") || got.UID != "" || got.Extra != nil {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}

	var none *IdentityMap
	same := v1alpha1.UserInfo{Username: "alice", Groups: []string{"sre"}, UID: "u1"}
	if got, err := none.Identity(same); err != nil || got.Username != "alice" || got.UID != "u1" {
		t.Errorf("without a map a requester is themselves: %+v, %v", got, err)
	}
}

func TestParseIdentityMapRefuses(t *testing.T) {
	for raw, want := range map[string]string{
		`users: {alice: ""}`:                        `users[alice]: Required value`,
		`groups: {sre: system:masters}`:             `groups[sre]: Forbidden: requesters must not be mapped to system:masters`,
		`groups: {system:authenticated: east-sre}`:  `groups[system:authenticated]: Forbidden: a group every user`,
		`groups: {system:serviceaccounts: east-ci}`: `groups[system:serviceaccounts]: Forbidden`,
		`{}`:                               `users: Required value: an identity map maps at least one user or group`,
		`users: {alice: a}` + "\nroles: x": `unknown field "roles"`,
		`users: [alice]`:                   `cannot unmarshal`,
	} {
		_, err := ParseIdentityMap([]byte(raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", raw, err, want)
		}
	}
}

func TestDescribeAs(t *testing.T) {
	alice := v1alpha1.UserInfo{Username: "alice@corp.example", Groups: []string{"sre"}}
	if got := DescribeAs(alice, alice, "east"); got != "alice@corp.example" {
		t.Errorf("unmapped: %q", got)
	}
	if got := DescribeAs(alice, v1alpha1.UserInfo{Username: "alice"}, "east"); got != `alice@corp.example (as alice on cluster "east")` {
		t.Errorf("mapped: %q", got)
	}
	if got := DescribeAs(alice, v1alpha1.UserInfo{Groups: []string{"east-sre"}}, "east"); got != `alice@corp.example (as groups [east-sre] on cluster "east")` {
		t.Errorf("mapped by group: %q", got)
	}
}
