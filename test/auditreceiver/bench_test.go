package auditreceiver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
)

// BenchmarkDelivery measures audit deliveries to a healthy storage service: the manager's
// Sender posting events (JSON, Idempotency-Key) to the receiver, which stores each durably
// (appended and fsynced) before it acknowledges, from 4 senders at once as the manager's audit
// workers do. It reports events per second.
func BenchmarkDelivery(b *testing.B) {
	_, ts := auditreceiver.NewTestServer(b)
	sender, err := audit.NewSender(audit.Config{URL: ts.URL})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	start := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + 3) / 4
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				ev := audit.Event{EventType: "kubernetes.execution", EventID: fmt.Sprintf("bench-%d-%d-%d", b.N, w, i), ExecutionName: "bench", Phase: "Completed"}
				if err := sender.Send(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
}
