package auditreceiver

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// NewTestServer starts a receiver on a loopback HTTP server for tb, storing into tb's temporary
// folder, and stops both when tb ends.
func NewTestServer(tb testing.TB) (*Server, *httptest.Server) {
	tb.Helper()
	srv, err := New(filepath.Join(tb.TempDir(), "events.jsonl"), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		ts.Close()
		_ = srv.Close()
	})
	return srv, ts
}
