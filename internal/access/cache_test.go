package access

import (
	"context"
	"errors"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
)

// countingCreator answers reviews from allowed (by verb) and counts the questions.
type countingCreator struct {
	allowed map[string]bool
	asked   int
	fail    error
}

func (c *countingCreator) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	c.asked++
	if c.fail != nil {
		return c.fail
	}
	sar := obj.(*authorizationv1.SubjectAccessReview)
	sar.Status.Allowed = c.allowed[sar.Spec.ResourceAttributes.Verb]
	return nil
}

func TestCachingCreator(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	api := &countingCreator{allowed: map[string]bool{"get": true}}
	c := &CachingCreator{Creator: api, TTL: 3 * time.Second, Clock: clk}
	alice := v1alpha1.UserInfo{Username: "alice", Groups: []string{"team"}}
	get := grants.Permission{Verb: "get", Resource: "pods", Namespace: "a", Name: "p"}
	del := grants.Permission{Verb: "delete", Resource: "pods", Namespace: "a", Name: "p"}
	ask := func(u v1alpha1.UserInfo, p grants.Permission) []grants.Permission {
		t.Helper()
		missing, err := Missing(context.Background(), c, u, []grants.Permission{p})
		if err != nil {
			t.Fatal(err)
		}
		return missing
	}

	// The same question within the TTL is answered once; a denial is cached like an approval.
	for range 3 {
		if m := ask(alice, get); len(m) != 0 {
			t.Fatalf("get was allowed, got missing %v", m)
		}
		if m := ask(alice, del); len(m) != 1 {
			t.Fatalf("delete was denied, got missing %v", m)
		}
	}
	if api.asked != 2 {
		t.Fatalf("asked the API server %d times, want 2", api.asked)
	}
	// Another user, another group or another object is another question.
	ask(v1alpha1.UserInfo{Username: "bob", Groups: []string{"team"}}, get)
	ask(v1alpha1.UserInfo{Username: "alice", Groups: []string{"other"}}, get)
	ask(alice, grants.Permission{Verb: "get", Resource: "pods", Namespace: "a", Name: "q"})
	if api.asked != 5 {
		t.Fatalf("asked %d times, want 5 (each distinct review once)", api.asked)
	}
	// Past the TTL the API server is asked again: a revoked right is honoured at most TTL.
	api.allowed["get"] = false
	clk.SetTime(clk.Now().Add(3 * time.Second))
	if m := ask(alice, get); len(m) != 1 {
		t.Fatalf("after the TTL the revoked right must be missing, got %v", m)
	}
	// An error is never cached: the caller fails closed, and the next call asks again.
	api.fail = errors.New("unavailable")
	clk.SetTime(clk.Now().Add(3 * time.Second))
	if _, err := Missing(context.Background(), c, alice, []grants.Permission{get}); err == nil {
		t.Fatal("an API server error must reach the caller")
	}
	api.fail = nil
	before := api.asked
	ask(alice, get)
	if api.asked != before+1 {
		t.Fatal("the failed review was cached")
	}
	// A TTL of zero asks every time.
	off := &CachingCreator{Creator: api}
	before = api.asked
	for range 2 {
		if _, err := Missing(context.Background(), off, alice, []grants.Permission{get}); err != nil {
			t.Fatal(err)
		}
	}
	if api.asked != before+2 {
		t.Fatalf("with no TTL every review is asked, asked %d", api.asked-before)
	}
}
