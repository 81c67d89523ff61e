package access

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CachingCreator answers a SubjectAccessReview from an earlier identical one for TTL, as the
// API server's own webhook authorizer caches its decisions: a burst of executions from one
// requester asks the API server once per permission, not once per execution. A right revoked
// is still honoured for at most TTL. Only the answer (allowed, denied, reason) is reused; an
// error is never cached, so callers still fail closed when the API server cannot answer.
type CachingCreator struct {
	// Creator asks the API server on a miss.
	Creator Creator
	// TTL is how long an answer is reused; zero or less asks every time.
	TTL time.Duration
	// Clock is the time source (default the real clock).
	Clock clock.PassiveClock

	mu      sync.Mutex
	answers map[string]cachedAnswer
	sweep   time.Time
}

type cachedAnswer struct {
	status  authorizationv1.SubjectAccessReviewStatus
	expires time.Time
}

var _ Creator = &CachingCreator{}

// Create fills a SubjectAccessReview's status, from the cache when an identical review was
// answered less than TTL ago. Other objects go straight to Creator.
func (c *CachingCreator) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	sar, ok := obj.(*authorizationv1.SubjectAccessReview)
	if !ok || c.TTL <= 0 || len(opts) > 0 {
		return c.Creator.Create(ctx, obj, opts...)
	}
	keyBytes, err := json.Marshal(sar.Spec)
	if err != nil {
		return c.Creator.Create(ctx, obj, opts...)
	}
	key := string(keyBytes)
	now := c.now()
	c.mu.Lock()
	if a, ok := c.answers[key]; ok && now.Before(a.expires) {
		c.mu.Unlock()
		sar.Status = a.status
		return nil
	}
	c.mu.Unlock()
	if err := c.Creator.Create(ctx, sar); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = map[string]cachedAnswer{}
	}
	// Expired answers go at most once a TTL, so the map holds about one TTL's distinct reviews.
	if now.After(c.sweep) {
		for k, a := range c.answers {
			if !now.Before(a.expires) {
				delete(c.answers, k)
			}
		}
		c.sweep = now.Add(c.TTL)
	}
	c.answers[key] = cachedAnswer{status: sar.Status, expires: now.Add(c.TTL)}
	return nil
}

func (c *CachingCreator) now() time.Time {
	if c.Clock == nil {
		return time.Now()
	}
	return c.Clock.Now()
}
