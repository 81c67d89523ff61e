// Package auditreceiver is a storage service for tests and demos: it receives the executor's
// audit events over HTTP, stores each one durably and once, and can be told to misbehave.
//
// Its API:
//
//	POST /api/v1/audit/kubernetes-execution   store an event (kubernaut JSON or a structured
//	                                          CloudEvent): 201 once stored, 409 for an event
//	                                          already stored, 400 for one without an id
//	GET  /api/v1/audit/kubernetes-execution   the stored events, oldest first, as a JSON array;
//	                                          ?executionName= keeps one execution's
//	GET  /control                             the fault in force and the counters (State)
//	POST /control                             set the fault (a Fault as JSON)
//
// Each event is appended as one line of JSON to the data file, and the file is synced before
// the answer, so an acknowledged event survives a crash. Events are deduplicated by their id
// (the kubernaut format's eventId, a CloudEvent's id), which the Idempotency-Key header must
// match when it is sent; the index is rebuilt from the file at start, so a restarted receiver
// still refuses duplicates.
package auditreceiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Path is where events are posted and listed.
const Path = "/api/v1/audit/kubernetes-execution"

// ControlPath is where faults are set and counters read.
const ControlPath = "/control"

// IdempotencyKeyHeader carries an event's id.
const IdempotencyKeyHeader = "Idempotency-Key"

// Options configure a Server.
type Options struct {
	// TokenFile, when set, holds the bearer token event posts and lists must carry. It is read
	// for every request, so rewriting it rotates the token.
	TokenFile string
	// Logger receives a line per stored, duplicate and refused event; nothing when nil.
	Logger *slog.Logger
}

// Server is the receiver. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	file     *os.File
	size     int64
	records  []record
	keys     map[string]bool
	fault    Fault
	left     int
	counters Counters
}

// New opens the data file at path (creating it), reads the events it holds, and returns a
// Server that appends to it.
func New(path string, opts Options) (*Server, error) {
	f, records, err := openStore(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("reading data file %s: %w", path, err)
	}
	s := &Server{
		opts: opts, log: opts.Logger, file: f, size: size, records: records,
		keys: make(map[string]bool, len(records)), fault: Fault{Mode: ModeOK, Stage: StageBefore},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range records {
		s.keys[r.key] = true
	}
	return s, nil
}

// Close closes the data file; event posts are answered 503 from then on.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}

// Handler returns the receiver's HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, s.postEvent)
	mux.HandleFunc("GET "+Path, s.listEvents)
	mux.HandleFunc("GET "+ControlPath, s.getControl)
	mux.HandleFunc("POST "+ControlPath, s.postControl)
	return mux
}

// SetFault sets the fault in force, as POST /control does.
func (s *Server) SetFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.left = f, f.Times
	return nil
}

// State returns the fault in force and the counters, as GET /control does.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Fault: s.fault, Counters: s.counters, Events: len(s.records)}
}

// Events returns the stored events, oldest first; only executionName's when it is not empty.
func (s *Server) Events(executionName string) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []json.RawMessage{}
	for _, r := range s.records {
		if executionName == "" || r.executionName == executionName {
			out = append(out, r.raw)
		}
	}
	return out
}

// postEvent stores one event, with the fault in force applied before or after.
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	fault := s.takeFault()
	// Read the whole body first: only then does the server notice a client that goes away.
	body, readErr := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxEventBytes))
	if fault.Stage == StageBefore && s.misbehave(w, r, fault) {
		return
	}
	status, msg := s.store(r, body, readErr)
	if fault.Stage == StageAfter && s.misbehave(w, r, fault) {
		return
	}
	answer(w, status, msg)
}

// takeFault counts a received post and returns the fault that applies to it.
func (s *Server) takeFault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.Received++
	f := s.fault
	if f.active() && s.left > 0 {
		s.left--
		if s.left == 0 {
			s.fault = Fault{Mode: ModeOK, Stage: StageBefore}
		}
	}
	return f
}

// misbehave applies fault: it waits out the delay, then closes the connection or answers with
// the fault's status. It reports whether the post is done: answered, or abandoned by its
// client during the delay.
func (s *Server) misbehave(w http.ResponseWriter, r *http.Request, fault Fault) bool {
	if fault.Delay > 0 {
		t := time.NewTimer(time.Duration(fault.Delay))
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client gave up waiting: nobody reads an answer, and before storing, nothing
			// is stored.
			s.count(func(c *Counters) { c.Abandoned++ })
			return true
		}
	}
	switch {
	case fault.Close:
		s.count(func(c *Counters) { c.Failed++ })
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return true
		}
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream without an answer
	case fault.Mode == ModeFail:
		s.count(func(c *Counters) { c.Failed++ })
		answer(w, fault.Status, "fault injected")
		return true
	}
	return false
}

// store checks and stores the posted event, body as read with err, and returns the status and
// message to answer with.
func (s *Server) store(r *http.Request, body []byte, err error) (int, string) {
	if status, msg := s.check(r); status != 0 {
		return s.reject(status, msg)
	}
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			return s.reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("the event is larger than %d bytes", maxEventBytes))
		}
		return s.reject(http.StatusBadRequest, "reading the body: "+err.Error())
	}
	var line bytes.Buffer
	if err := json.Compact(&line, body); err != nil {
		return s.reject(http.StatusBadRequest, "the body is not JSON: "+err.Error())
	}
	key, name, err := parseEvent(line.Bytes())
	if err != nil {
		return s.reject(http.StatusBadRequest, err.Error())
	}
	if key == "" {
		return s.reject(http.StatusBadRequest, "the event has no id (eventId, or id for a CloudEvent)")
	}
	if h := strings.TrimSpace(r.Header.Get(IdempotencyKeyHeader)); h != "" && h != key {
		return s.reject(http.StatusBadRequest, fmt.Sprintf("the Idempotency-Key %q is not the event's id %q", h, key))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[key] {
		s.counters.Duplicates++
		s.log.Info("duplicate event refused", "eventId", key, "executionName", name)
		return http.StatusConflict, "event " + key + " is already stored"
	}
	if s.file == nil {
		return http.StatusServiceUnavailable, "the receiver is closed"
	}
	if err := appendRecord(s.file, line.Bytes()); err != nil {
		// Cut a partly written line away, so the file stays one event per line.
		_ = s.file.Truncate(s.size)
		_, _ = s.file.Seek(s.size, io.SeekStart)
		s.log.Error("storing event failed", "eventId", key, "error", err)
		return http.StatusInternalServerError, "storing the event: " + err.Error()
	}
	s.size += int64(line.Len()) + 1
	s.keys[key] = true
	s.records = append(s.records, record{key: key, executionName: name, raw: json.RawMessage(line.Bytes())})
	s.counters.Stored++
	s.log.Info("event stored", "eventId", key, "executionName", name)
	return http.StatusCreated, "event " + key + " stored"
}

// check returns the status and message that refuse r for its content type or token, or 0.
func (s *Server) check(r *http.Request) (int, string) {
	if status, msg := s.authorize(r); status != 0 {
		return status, msg
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/cloudevents+json") {
		return http.StatusUnsupportedMediaType, "Content-Type must be application/json or application/cloudevents+json (structured mode)"
	}
	return 0, ""
}

// authorize returns 401 and a message when a token is required and r does not carry it.
func (s *Server) authorize(r *http.Request) (int, string) {
	if s.opts.TokenFile == "" {
		return 0, ""
	}
	want, err := os.ReadFile(s.opts.TokenFile)
	if err != nil {
		return http.StatusInternalServerError, "reading the token file: " + err.Error()
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got != strings.TrimSpace(string(want)) {
		return http.StatusUnauthorized, "a valid bearer token is required"
	}
	return 0, ""
}

// reject counts a refused post and returns its status and message.
func (s *Server) reject(status int, msg string) (int, string) {
	s.count(func(c *Counters) { c.Rejected++ })
	s.log.Info("event refused", "status", status, "reason", msg)
	return status, msg
}

// count changes the counters under the lock.
func (s *Server) count(change func(*Counters)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.counters)
}

// listEvents answers the stored events as a JSON array.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	if status, msg := s.authorize(r); status != 0 {
		answer(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, s.Events(r.URL.Query().Get("executionName")))
}

// getControl answers the State.
func (s *Server) getControl(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}

// postControl sets the fault and answers the new State.
func (s *Server) postControl(w http.ResponseWriter, r *http.Request) {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64*1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		answer(w, http.StatusBadRequest, "reading the fault: "+err.Error())
		return
	}
	if err := s.SetFault(f); err != nil {
		answer(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("fault set", "mode", f.Mode, "status", f.Status, "delay", time.Duration(f.Delay).String(),
		"close", f.Close, "stage", f.Stage, "times", f.Times)
	writeJSON(w, http.StatusOK, s.State())
}

// answer writes a JSON object {"message": msg} with status.
func answer(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
