package auditreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernaut/kubernaut-executor/internal/audit"
)

// receiver is a Server on a test HTTP server.
type receiver struct {
	*Server
	url    string
	path   string
	client *Client
	close  func()
}

// start starts a receiver storing to path (a new file when empty).
func start(t *testing.T, path string, opts Options) *receiver {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "events.jsonl")
	}
	s, err := New(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	r := &receiver{Server: s, url: srv.URL, path: path, client: &Client{URL: srv.URL}}
	var once sync.Once
	r.close = func() {
		once.Do(func() {
			srv.Close()
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(r.close)
	return r
}

// event returns a kubernaut-format event body with id and executionName.
func event(id, executionName string) []byte {
	return []byte(fmt.Sprintf(`{"eventType":"kubernetes.execution","eventId":%q,
		"executionName":%q,"phase":"Completed"}`, id, executionName))
}

// post posts body with key as its Idempotency-Key (none when empty) and returns the status.
func post(t *testing.T, url, key string, body []byte, contentType string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set(IdempotencyKeyHeader, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// lines returns the non-empty lines of the data file.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("the data file does not end with a newline: %q", b)
	}
	return strings.Fields(string(b))
}

// state returns the receiver's state through its API.
func (r *receiver) state(t *testing.T) State {
	t.Helper()
	st, err := r.client.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// events returns the stored events of executionName through the API.
func (r *receiver) events(t *testing.T, executionName string) []json.RawMessage {
	t.Helper()
	evs, err := r.client.Events(context.Background(), executionName)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func expect[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestStoreAndList(t *testing.T) {
	r := start(t, "", Options{})
	expect(t, "first", post(t, r.url, "e1", event("e1", "scale-web"), "application/json"), http.StatusCreated)
	expect(t, "second", post(t, r.url, "", event("e2", "restart-pod"), "application/json; charset=utf-8"), http.StatusCreated)

	all := r.events(t, "")
	if len(all) != 2 {
		t.Fatalf("listed %d events, want 2", len(all))
	}
	expect(t, "first listed", string(all[0]), `{"eventType":"kubernetes.execution","eventId":"e1","executionName":"scale-web","phase":"Completed"}`)
	one := r.events(t, "restart-pod")
	if len(one) != 1 || !bytes.Contains(one[0], []byte(`"eventId":"e2"`)) {
		t.Errorf("events of restart-pod = %s", one)
	}
	expect(t, "events of an unknown execution", len(r.events(t, "nope")), 0)

	got := lines(t, r.path)
	if len(got) != 2 || got[0] != string(all[0]) || got[1] != string(all[1]) {
		t.Errorf("data file lines = %q, want the two events, one per line", got)
	}
	st := r.state(t)
	expect(t, "counters", st.Counters, Counters{Received: 2, Stored: 2})
	expect(t, "events", st.Events, 2)
}

func TestDuplicateIsStoredOnce(t *testing.T) {
	r := start(t, "", Options{})
	body := event("e1", "scale-web")
	expect(t, "first post", post(t, r.url, "e1", body, "application/json"), http.StatusCreated)
	expect(t, "resend", post(t, r.url, "e1", body, "application/json"), http.StatusConflict)
	expect(t, "resend without key", post(t, r.url, "", body, "application/json"), http.StatusConflict)
	expect(t, "stored lines", len(lines(t, r.path)), 1)
	expect(t, "counters", r.state(t).Counters, Counters{Received: 3, Stored: 1, Duplicates: 2})
}

func TestRestartKeepsDataAndDeduplication(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	first := start(t, path, Options{})
	expect(t, "post", post(t, first.url, "e1", event("e1", "scale-web"), "application/json"), http.StatusCreated)
	first.close()

	// A crash in the middle of a write leaves half a line: it is dropped at start.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"eventId":"half`)
	_ = f.Close()

	second := start(t, path, Options{})
	expect(t, "events after restart", len(second.events(t, "")), 1)
	expect(t, "resend after restart", post(t, second.url, "e1", event("e1", "scale-web"), "application/json"), http.StatusConflict)
	expect(t, "new event", post(t, second.url, "e2", event("e2", "scale-web"), "application/json"), http.StatusCreated)
	expect(t, "stored lines", len(lines(t, path)), 2)
	second.close()

	third := start(t, path, Options{})
	expect(t, "events after the second restart", len(third.events(t, "scale-web")), 2)
}

func TestNewRefusesACorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte("{\"eventId\":\"e1\"}\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(path, Options{}); err == nil {
		t.Fatal("New accepted a data file with a line that is not an event")
	}
}

func TestRefusals(t *testing.T) {
	r := start(t, "", Options{})
	big := append([]byte(`{"eventId":"big","x":"`), bytes.Repeat([]byte("x"), maxEventBytes)...)
	big = append(big, `"}`...)
	tests := []struct {
		name        string
		key         string
		body        []byte
		contentType string
		want        int
	}{
		{"no id", "k", []byte(`{"executionName":"x"}`), "application/json", http.StatusBadRequest},
		{"key that is not the id", "other", event("e1", "x"), "application/json", http.StatusBadRequest},
		{"not JSON", "e1", []byte(`{"eventId":`), "application/json", http.StatusBadRequest},
		{"not an object", "e1", []byte(`["e1"]`), "application/json", http.StatusBadRequest},
		{"wrong content type", "e1", event("e1", "x"), "text/plain", http.StatusUnsupportedMediaType},
		{"too large", "big", big, "application/json", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, "status", post(t, r.url, tt.key, tt.body, tt.contentType), tt.want)
		})
	}
	st := r.state(t)
	expect(t, "rejected", st.Counters.Rejected, len(tests))
	expect(t, "events", st.Events, 0)
}

func TestBearerToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "", Options{TokenFile: tokenFile})
	expect(t, "without a token", post(t, r.url, "e1", event("e1", "x"), "application/json"), http.StatusUnauthorized)

	s, err := audit.NewSender(audit.Config{URL: r.url})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), audit.Event{EventID: "e1"})
	if !audit.IsDefect(err) || !strings.Contains(err.Error(), "401") {
		t.Errorf("Send without a token = %v, want a 401 defect", err)
	}
	r.client.Token = "tok-1"
	expect(t, "events", len(r.events(t, "")), 0)
}

// sender returns an audit.Sender for the receiver.
func (r *receiver) sender(t *testing.T, format audit.Format, timeout time.Duration) *audit.Sender {
	t.Helper()
	s, err := audit.NewSender(audit.Config{URL: r.url, Format: format, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTheExecutorsSender(t *testing.T) {
	for _, format := range []audit.Format{audit.FormatKubernaut, audit.FormatCloudEvents} {
		t.Run(string(format), func(t *testing.T) {
			r := start(t, "", Options{})
			s := r.sender(t, format, 0)
			ev := audit.Event{EventType: audit.EventType, EventID: "abc123", ExecutionName: "scale-web", ExecutionNamespace: "team-a"}
			if err := s.Send(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(context.Background(), ev); err != nil {
				t.Fatalf("resend: %v, want acknowledged (409)", err)
			}
			expect(t, "counters", r.state(t).Counters, Counters{Received: 2, Stored: 1, Duplicates: 1})
			evs := r.events(t, "scale-web")
			if len(evs) != 1 || !bytes.Contains(evs[0], []byte(`"abc123"`)) {
				t.Errorf("events of scale-web = %s", evs)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		// status is the DeliveryError's status; 0 for no answer.
		status int
		defect bool
		// stored is whether the event is stored despite the failure.
		stored bool
		// failed is the Failed counter after the post.
		failed int
	}{
		{name: "fail with the default status", fault: Fault{Mode: ModeFail}, status: 503, failed: 1},
		{name: "fail 500", fault: Fault{Mode: ModeFail, Status: 500}, status: 500, failed: 1},
		{name: "fail 400", fault: Fault{Mode: ModeFail, Status: 400}, status: 400, defect: true, failed: 1},
		{name: "close", fault: Fault{Close: true}, failed: 1},
		{name: "slow answer beyond the timeout", fault: Fault{Delay: Duration(2 * time.Second)}, stored: false},
		{name: "acknowledgement lost after storing", fault: Fault{Mode: ModeFail, Status: 500, Stage: StageAfter}, status: 500, stored: true, failed: 1},
		{name: "connection closed after storing", fault: Fault{Close: true, Stage: StageAfter}, stored: true, failed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, "", Options{})
			if _, err := r.client.SetFault(context.Background(), tt.fault); err != nil {
				t.Fatal(err)
			}
			s := r.sender(t, audit.FormatKubernaut, 300*time.Millisecond)
			ev := audit.Event{EventType: audit.EventType, EventID: "e1", ExecutionName: "scale-web"}
			err := s.Send(context.Background(), ev)
			var de *audit.DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Send = %v, want a DeliveryError", err)
			}
			expect(t, "status", de.StatusCode, tt.status)
			expect(t, "defect", de.Defect, tt.defect)

			// The storage service recovers: the resend is stored, or refused as a duplicate of
			// the event stored before the acknowledgement was lost. Either way, once.
			if _, err := r.client.SetFault(context.Background(), Fault{Mode: ModeOK}); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(context.Background(), ev); err != nil {
				t.Fatalf("resend after recovery: %v", err)
			}
			st := r.state(t)
			if tt.fault.Delay > 0 {
				// The server notices the client left a moment after the client does.
				deadline := time.Now().Add(5 * time.Second)
				for st.Counters.Abandoned == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					st = r.state(t)
				}
				expect(t, "abandoned", st.Counters.Abandoned, 1)
			}
			expect(t, "failed", st.Counters.Failed, tt.failed)
			expect(t, "duplicates", st.Counters.Duplicates == 1, tt.stored)
			expect(t, "events", st.Events, 1)
			expect(t, "stored lines", len(lines(t, r.path)), 1)
		})
	}
}

func TestFaultTimes(t *testing.T) {
	r := start(t, "", Options{})
	if _, err := r.client.SetFault(context.Background(), Fault{Mode: ModeFail, Status: 503, Times: 2}); err != nil {
		t.Fatal(err)
	}
	body := event("e1", "x")
	expect(t, "first", post(t, r.url, "e1", body, "application/json"), http.StatusServiceUnavailable)
	expect(t, "second", post(t, r.url, "e1", body, "application/json"), http.StatusServiceUnavailable)
	expect(t, "third", post(t, r.url, "e1", body, "application/json"), http.StatusCreated)
	st := r.state(t)
	expect(t, "fault after its times", st.Fault.Mode, ModeOK)
	expect(t, "counters", st.Counters, Counters{Received: 3, Stored: 1, Failed: 2})
}

func TestSlowAnswerStillStores(t *testing.T) {
	r := start(t, "", Options{})
	if _, err := r.client.SetFault(context.Background(), Fault{Delay: Duration(200 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	expect(t, "status", post(t, r.url, "e1", event("e1", "x"), "application/json"), http.StatusCreated)
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("answered after %s, want at least the 200ms delay", took)
	}
}

func TestControl(t *testing.T) {
	r := start(t, "", Options{})
	for _, body := range []string{`{"mode":"maybe"}`, `{"mode":"fail","status":200}`, `{"delay":"soon"}`, `{"stage":"during"}`, `{"mood":"ok"}`} {
		resp, err := http.Post(r.url+ControlPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		expect(t, "POST /control "+body, resp.StatusCode, http.StatusBadRequest)
	}
	st, err := r.client.SetFault(context.Background(), Fault{Mode: ModeFail, Delay: Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "fault", st.Fault, Fault{Mode: ModeFail, Status: 503, Delay: Duration(time.Second), Stage: StageBefore})
	b, _ := json.Marshal(st.Fault)
	expect(t, "fault JSON", string(b), `{"mode":"fail","status":503,"delay":"1s","stage":"before"}`)
}

func TestConcurrentPostsStoreOnce(t *testing.T) {
	r := start(t, "", Options{})
	body := event("same", "x")
	const n = 32
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, r.url+Path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(IdempotencyKeyHeader, "same")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	expect(t, "201 answers", count[http.StatusCreated], 1)
	expect(t, "409 answers", count[http.StatusConflict], n-1)
	expect(t, "stored lines", len(lines(t, r.path)), 1)
}
