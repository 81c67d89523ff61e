package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Path is where the storage service receives execution audit events, below its URL.
const Path = "/api/v1/audit/kubernetes-execution"

// IdempotencyKeyHeader carries the event's id, so the storage service stores a resent event
// once (and answers 409 Conflict to the resend, which the Sender takes as acknowledgement).
const IdempotencyKeyHeader = "Idempotency-Key"

// DefaultTimeout bounds one delivery: connecting, sending and reading the answer.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes bounds how much of an answer's body the Sender reads.
const maxResponseBytes = 64 * 1024

// Format is how the Sender encodes an event.
type Format string

const (
	// FormatKubernaut posts the Event as JSON (Content-Type application/json). The default.
	FormatKubernaut Format = "kubernaut"
	// FormatCloudEvents posts the Event as the data of a CloudEvents 1.0 event in structured
	// mode (Content-Type application/cloudevents+json); see CloudEvent.
	FormatCloudEvents Format = "cloudevents"
)

// ParseFormat returns the format called name; empty means FormatKubernaut.
func ParseFormat(name string) (Format, error) {
	switch Format(name) {
	case "", FormatKubernaut:
		return FormatKubernaut, nil
	case FormatCloudEvents:
		return FormatCloudEvents, nil
	default:
		return "", fmt.Errorf("unknown audit format %q: want %s or %s", name, FormatKubernaut, FormatCloudEvents)
	}
}

// Sink receives audit events. A Sender delivers them to the storage service; LogSink writes
// them to the log when no storage service is configured.
type Sink interface {
	// Send delivers ev, returning nil once it is acknowledged.
	Send(ctx context.Context, ev Event) error
}

// Config says where and how a Sender delivers events.
type Config struct {
	// URL is the storage service's base URL, for example https://storage.kubernaut:8443; events
	// go to URL + Path. Plain HTTP only when the scheme is http; then none of the TLS and token
	// settings may be set, since they would travel or mean nothing in clear text.
	URL string
	// Format is how events are encoded; FormatKubernaut when empty.
	Format Format
	// CAFile is a PEM bundle of the CAs that may sign the storage service's certificate; the
	// system's roots when empty. It is read once, by NewSender.
	CAFile string
	// TokenFile holds a bearer token, read again for every send so a rotated Secret takes
	// effect without a restart; no Authorization header when empty.
	TokenFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for mutual TLS; both or
	// neither. They are loaded again when either file changes.
	CertFile, KeyFile string
	// Timeout bounds one delivery; DefaultTimeout when zero.
	Timeout time.Duration
	// Source is the CloudEvents source attribute; DefaultSource when empty.
	Source string
}

// Sender delivers audit events to the storage service over HTTP. It is safe for concurrent
// use. Send never retries by itself: the caller keeps the event (the execution is the outbox)
// and retries after Backoff.
type Sender struct {
	endpoint  string
	format    Format
	source    string
	tokenFile string
	client    *http.Client
}

var _ Sink = (*Sender)(nil)

// NewSender checks cfg and returns a Sender for it. The CA bundle, token and client
// certificate are read once here, so a wrong configuration fails at start.
func NewSender(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing audit URL: %w", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("audit URL %q must start with https:// (or http:// for plain HTTP)", cfg.URL)
	case u.Host == "":
		return nil, fmt.Errorf("audit URL %q has no host", cfg.URL)
	case u.User != nil:
		return nil, fmt.Errorf("audit URL must not hold credentials; use a token file")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("audit URL %q must not have a query or fragment", cfg.URL)
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return nil, fmt.Errorf("audit client certificate and key must be given together")
	case u.Scheme == "http" && (cfg.CAFile != "" || cfg.TokenFile != "" || cfg.CertFile != ""):
		return nil, fmt.Errorf("audit URL %q is plain HTTP: a CA bundle, bearer token or client certificate needs https", cfg.URL)
	}
	format, err := ParseFormat(string(cfg.Format))
	if err != nil {
		return nil, err
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		if tlsConfig.RootCAs, err = readCABundle(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	if cfg.CertFile != "" {
		cert, err := newClientCertificate(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		tlsConfig.GetClientCertificate = cert.get
	}
	if cfg.TokenFile != "" {
		if _, err := readToken(cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig

	s := &Sender{
		endpoint:  u.JoinPath(Path).String(),
		format:    format,
		source:    cfg.Source,
		tokenFile: cfg.TokenFile,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect is a misconfigured URL: answer it as a defect rather than post the
			// event, and the token, somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if s.client.Timeout <= 0 {
		s.client.Timeout = DefaultTimeout
	}
	if s.source == "" {
		s.source = DefaultSource
	}
	return s, nil
}

// Endpoint returns the URL events are posted to.
func (s *Sender) Endpoint() string { return s.endpoint }

// Send posts ev to the storage service with the Idempotency-Key header set to its id. It
// returns nil when the service acknowledged the event (2xx, or 409 for an event it already
// holds), and otherwise a *DeliveryError that says whether the failure is retryable or a
// defect (see Classify).
func (s *Sender) Send(ctx context.Context, ev Event) error {
	if ev.EventID == "" {
		return &DeliveryError{Defect: true, Err: errors.New("the event has no id")}
	}
	req, err := s.request(ctx, ev)
	if err != nil {
		return &DeliveryError{EventID: ev.EventID, Defect: true, Err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return &DeliveryError{EventID: ev.EventID, Err: err}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes)) // lets the connection be reused
	_ = resp.Body.Close()

	acknowledged, defect := Classify(resp.StatusCode)
	if acknowledged {
		return nil
	}
	return &DeliveryError{EventID: ev.EventID, StatusCode: resp.StatusCode, Defect: defect, Body: snippet(body)}
}

// request builds the POST of ev in the Sender's format, with its headers.
func (s *Sender) request(ctx context.Context, ev Event) (*http.Request, error) {
	var req *http.Request
	switch s.format {
	case FormatCloudEvents:
		ce, err := CloudEvent(ev, s.source)
		if err != nil {
			return nil, err
		}
		if req, err = cloudEventRequest(ctx, s.endpoint, ce); err != nil {
			return nil, err
		}
	default:
		body, err := ev.Encode()
		if err != nil {
			return nil, err
		}
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body)); err != nil {
			return nil, fmt.Errorf("building audit request: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(IdempotencyKeyHeader, ev.EventID)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", DefaultSource)
	if s.tokenFile != "" {
		token, err := readToken(s.tokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// LogSink writes each event to the structured log found in the context (the reconciler's,
// which names the execution). It is the audit trail when no storage service is configured,
// and never fails.
type LogSink struct{}

var _ Sink = LogSink{}

// Send logs ev at info level: its id, execution, outcome and requester, and the whole event.
func (LogSink) Send(ctx context.Context, ev Event) error {
	requester := ""
	if ev.Requester != nil {
		requester = ev.Requester.Username
	}
	log.FromContext(ctx).Info("audit event",
		"eventId", ev.EventID,
		"kubernetesExecution", klog.KRef(ev.ExecutionNamespace, ev.ExecutionName),
		"actionType", ev.ActionType,
		"phase", ev.Phase,
		"reason", ev.Reason,
		"success", ev.Result.Success,
		"requester", requester,
		"event", ev)
	return nil
}
