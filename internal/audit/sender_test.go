package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kubernaut/kubernaut-executor/test/testpki"
)

// sampleEvent is the event of a completed execution.
func sampleEvent(t *testing.T) Event {
	t.Helper()
	ev, err := Build(execution(nil), inputs())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// received is what a test server saw of one request.
type received struct {
	header http.Header
	path   string
	body   []byte
}

// recorder is a handler that records requests and answers each with answer.
type recorder struct {
	mu     sync.Mutex
	reqs   []received
	answer func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, received{header: r.Header.Clone(), path: r.URL.Path, body: body})
	rec.mu.Unlock()
	if rec.answer != nil {
		rec.answer(w, r)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (rec *recorder) requests() []received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]received(nil), rec.reqs...)
}

func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSendPostsTheEvent(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ev := sampleEvent(t)

	s := newSender(t, Config{URL: srv.URL + "/storage/"})
	if err := s.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	expect(t, "path", r.path, "/storage"+Path)
	expect(t, "Idempotency-Key", r.header.Get("Idempotency-Key"), ev.EventID)
	expect(t, "Content-Type", r.header.Get("Content-Type"), "application/json")
	expect(t, "Authorization", r.header.Get("Authorization"), "")
	var got Event
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want, _ := ev.Encode()
	expect(t, "body", string(r.body), string(want))
	expect(t, "decoded eventId", got.EventID, ev.EventID)
}

func TestSendClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		// ack is true when Send must return nil.
		ack bool
		// defect is the DeliveryError's classification when not acknowledged.
		defect bool
		status int
		// inMessage must appear in the error's message.
		inMessage string
	}{
		{name: "200", answer: status(200, ""), ack: true},
		{name: "201", answer: status(201, `{"stored":true}`), ack: true},
		{name: "204", answer: status(204, ""), ack: true},
		{name: "409 duplicate", answer: status(409, "duplicate"), ack: true},
		{name: "400", answer: status(400, `{"error":"eventId missing"}`), defect: true, status: 400, inMessage: `eventId missing`},
		{name: "401", answer: status(401, "bad token"), defect: true, status: 401, inMessage: "401 Unauthorized"},
		{name: "403", answer: status(403, ""), defect: true, status: 403},
		{name: "413", answer: status(413, ""), defect: true, status: 413},
		{name: "408", answer: status(408, ""), status: 408},
		{name: "429", answer: status(429, "slow down"), status: 429, inMessage: "slow down"},
		{name: "500", answer: status(500, "database down"), status: 500, inMessage: "database down"},
		{name: "503", answer: status(503, ""), status: 503},
		{name: "redirect", answer: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example/", http.StatusTemporaryRedirect)
		}, defect: true, status: 307},
		{name: "huge body", answer: status(500, strings.Repeat("y", 1<<20)), status: 500},
		{name: "closed connection", answer: func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, inMessage: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&recorder{answer: tt.answer})
			defer srv.Close()
			err := newSender(t, Config{URL: srv.URL}).Send(context.Background(), sampleEvent(t))
			if tt.ack {
				if err != nil {
					t.Fatalf("Send = %v, want acknowledged", err)
				}
				return
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Send = %v, want a *DeliveryError", err)
			}
			t.Log(err)
			expect(t, "Defect", de.Defect, tt.defect)
			expect(t, "IsDefect", IsDefect(err), tt.defect)
			expect(t, "StatusCode", de.StatusCode, tt.status)
			if len(de.Body) > MaxBodySnippet+len("…") {
				t.Errorf("body snippet is %d bytes, want at most %d", len(de.Body), MaxBodySnippet)
			}
			if !strings.Contains(err.Error(), tt.inMessage) {
				t.Errorf("error %q does not contain %q", err, tt.inMessage)
			}
		})
	}
}

// status answers with code and body.
func status(code int, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(&recorder{answer: func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}})
	defer srv.Close()
	defer close(release)

	start := time.Now()
	err := newSender(t, Config{URL: srv.URL, Timeout: 200 * time.Millisecond}).Send(context.Background(), sampleEvent(t))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Send took %s with a 200ms timeout", took)
	}
	var de *DeliveryError
	if !errors.As(err, &de) || de.Defect || de.StatusCode != 0 {
		t.Fatalf("Send = %#v, want a retryable DeliveryError without status", err)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("Send = %v, want a timeout", err)
	}
}

func TestSendCancelled(t *testing.T) {
	srv := httptest.NewServer(&recorder{answer: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := newSender(t, Config{URL: srv.URL}).Send(ctx, sampleEvent(t))
	if !errors.Is(err, context.DeadlineExceeded) || IsDefect(err) {
		t.Fatalf("Send = %v, want a retryable context deadline error", err)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	err = newSender(t, Config{URL: "http://" + addr}).Send(context.Background(), sampleEvent(t))
	var de *DeliveryError
	if !errors.As(err, &de) || de.Defect {
		t.Fatalf("Send = %v, want a retryable DeliveryError", err)
	}
}

func TestSendRefusesAnEventWithoutID(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	err := newSender(t, Config{URL: srv.URL}).Send(context.Background(), Event{})
	if !IsDefect(err) {
		t.Fatalf("Send = %v, want a defect", err)
	}
	expect(t, "requests", len(rec.requests()), 0)
}

func TestSendOverTLS(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	rec := &recorder{answer: func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "client" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}}
	srv := httptest.NewUnstartedServer(rec)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pki.Server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.Pool,
	}
	srv.StartTLS()
	defer srv.Close()

	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "first-token\n")
	s := newSender(t, Config{
		URL: srv.URL, CAFile: pki.CAFile, TokenFile: tokenFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile,
	})
	ev := sampleEvent(t)
	if err := s.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}

	// The Secret is rotated: the next send carries the new token, without a new Sender.
	writeFile(t, tokenFile, "second-token")
	if err := s.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	expect(t, "first Authorization", reqs[0].header.Get("Authorization"), "Bearer first-token")
	expect(t, "second Authorization", reqs[1].header.Get("Authorization"), "Bearer second-token")

	// A token file that vanishes is a defect, and nothing is sent without it.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), ev); !IsDefect(err) {
		t.Errorf("Send without a token file = %v, want a defect", err)
	}
	expect(t, "requests", len(rec.requests()), 2)
}

func TestSendRejectsAnUnknownServer(t *testing.T) {
	pki := testpki.New(t, t.TempDir())
	srv := httptest.NewTLSServer(&recorder{}) // signed by httptest's own CA, not ours
	defer srv.Close()
	err := newSender(t, Config{URL: srv.URL, CAFile: pki.CAFile}).Send(context.Background(), sampleEvent(t))
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Fatalf("Send = %v, want a certificate verification error", err)
	}
}

func TestClientCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	c, err := newClientCertificate(pki.ClientCertFile, pki.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.get(nil)
	renewed := pki.Issue(t, "kubernaut-executor-renewed", false)
	testpki.WritePEM(t, pki.ClientCertFile, "CERTIFICATE", renewed.Certificate[0])
	key, _ := x509.MarshalECPrivateKey(renewed.PrivateKey.(*ecdsa.PrivateKey))
	testpki.WritePEM(t, pki.ClientKeyFile, "EC PRIVATE KEY", key)
	// Make sure the stamp differs even on a coarse file system clock.
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(pki.ClientCertFile, later, later)
	second, err := c.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(second.Certificate[0]) == string(first.Certificate[0]) {
		t.Error("the renewed client certificate was not loaded")
	}

	// Half a rotation (a key that does not match) keeps the last good pair.
	writeFile(t, pki.ClientKeyFile, "not a key")
	_ = os.Chtimes(pki.ClientKeyFile, later.Add(time.Minute), later.Add(time.Minute))
	third, err := c.get(nil)
	if err != nil || third != second {
		t.Errorf("get during a half rotation = %v, %v; want the last good pair", third, err)
	}
}

func TestNewSenderChecksTheConfiguration(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New(t, dir)
	token := filepath.Join(dir, "token")
	writeFile(t, token, "t")
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, " \n")
	notPEM := filepath.Join(dir, "not-pem")
	writeFile(t, notPEM, "hello")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no scheme", Config{URL: "storage:8443"}},
		{"other scheme", Config{URL: "ftp://storage"}},
		{"no host", Config{URL: "https:///path"}},
		{"credentials in the URL", Config{URL: "https://user@storage"}},
		{"query", Config{URL: "https://storage?x=1"}},
		{"token over plain HTTP", Config{URL: "http://storage", TokenFile: token}},
		{"CA over plain HTTP", Config{URL: "http://storage", CAFile: pki.CAFile}},
		{"certificate without key", Config{URL: "https://storage", CertFile: pki.ClientCertFile}},
		{"unknown format", Config{URL: "https://storage", Format: "xml"}},
		{"missing CA bundle", Config{URL: "https://storage", CAFile: filepath.Join(dir, "missing")}},
		{"CA bundle without certificates", Config{URL: "https://storage", CAFile: notPEM}},
		{"missing token file", Config{URL: "https://storage", TokenFile: filepath.Join(dir, "missing")}},
		{"empty token file", Config{URL: "https://storage", TokenFile: empty}},
		{"key that is not a key", Config{URL: "https://storage", CertFile: pki.ClientCertFile, KeyFile: notPEM}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSender(tt.cfg); err == nil {
				t.Errorf("NewSender(%+v) succeeded", tt.cfg)
			}
		})
	}
	s := newSender(t, Config{URL: "https://storage.kubernaut:8443/base"})
	expect(t, "endpoint", s.Endpoint(), "https://storage.kubernaut:8443/base"+Path)
	expect(t, "default timeout", s.client.Timeout, DefaultTimeout)
}

func TestSendCloudEvent(t *testing.T) {
	type seen struct {
		id, typ, source, subject, dataContentType, contentType, key string
		data                                                        Event
		err                                                         error
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(body, &fields)
		if d := fields["data"]; len(d) == 0 || d[0] != '{' {
			t.Errorf("data is not a JSON object in %s", body)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ce, err := cehttp.NewEventFromHTTPRequest(r)
		s := seen{contentType: r.Header.Get("Content-Type"), key: r.Header.Get(IdempotencyKeyHeader), err: err}
		if err == nil {
			s.id, s.typ, s.source, s.subject, s.dataContentType = ce.ID(), ce.Type(), ce.Source(), ce.Subject(), ce.DataContentType()
			s.err = ce.DataAs(&s.data)
		}
		got <- s
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	ev := sampleEvent(t)

	if err := newSender(t, Config{URL: srv.URL, Format: FormatCloudEvents}).Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.err != nil {
		t.Fatal(s.err)
	}
	expect(t, "Content-Type (structured mode)", s.contentType, "application/cloudevents+json")
	expect(t, "Idempotency-Key", s.key, ev.EventID)
	expect(t, "id", s.id, ev.EventID)
	expect(t, "type", s.typ, CloudEventType)
	expect(t, "source", s.source, DefaultSource)
	expect(t, "subject", s.subject, "team-a/scale-web")
	expect(t, "datacontenttype", s.dataContentType, "application/json")
	expect(t, "data.eventId", s.data.EventID, ev.EventID)
	expect(t, "data.executionName", s.data.ExecutionName, "scale-web")
	expect(t, "data.requester", s.data.Requester.Username, "jane")
	expect(t, "data.parameters", string(s.data.Parameters), `{"replicas":3}`)
}

func TestSendCloudEventClassifiesAnswers(t *testing.T) {
	for code, wantDefect := range map[int]bool{400: true, 503: false} {
		srv := httptest.NewServer(&recorder{answer: status(code, "no")})
		err := newSender(t, Config{URL: srv.URL, Format: FormatCloudEvents}).Send(context.Background(), sampleEvent(t))
		srv.Close()
		var de *DeliveryError
		if !errors.As(err, &de) || de.StatusCode != code || de.Defect != wantDefect {
			t.Errorf("answer %d: Send = %v, want a DeliveryError with defect %t", code, err, wantDefect)
		}
	}
	srv := httptest.NewServer(&recorder{answer: status(409, "")})
	defer srv.Close()
	if err := newSender(t, Config{URL: srv.URL, Format: FormatCloudEvents}).Send(context.Background(), sampleEvent(t)); err != nil {
		t.Errorf("409: Send = %v, want acknowledged", err)
	}
}

func TestLogSink(t *testing.T) {
	if err := (LogSink{}).Send(context.Background(), sampleEvent(t)); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
