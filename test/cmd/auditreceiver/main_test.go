package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"

	"github.com/kubernaut/kubernaut-executor/test/testpki"
)

// process is the receiver binary, running.
type process struct {
	cmd *exec.Cmd
	url string
}

// startBinary runs the receiver binary with args and waits for its AUDIT_URL line.
func startBinary(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if url, ok := strings.CutPrefix(s.Text(), "AUDIT_URL="); ok {
				line <- url
			}
		}
	}()
	select {
	case p.url = <-line:
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver printed no AUDIT_URL line")
	}
	return p
}

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("the receiver exited with %v", err)
	}
}

func TestBinaryOverTLSKeepsEventsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "auditreceiver")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building the receiver: %v", err)
	}
	caFile, certFile, keyFile := writeServerCertificate(t, dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data", "events.jsonl")
	args := []string{"-listen", "127.0.0.1:0", "-data", data, "-tls-cert", certFile, "-tls-key", keyFile, "-token-file", tokenFile}

	ev := audit.Event{EventType: audit.EventType, EventID: "e-restart", ExecutionName: "scale-web", ExecutionNamespace: "team-a"}
	p := startBinary(t, bin, args...)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("AUDIT_URL = %s, want https", p.url)
	}
	s, err := audit.NewSender(audit.Config{URL: p.url, CAFile: caFile, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	p = startBinary(t, bin, args...)
	s, err = audit.NewSender(audit.Config{URL: p.url, CAFile: caFile, TokenFile: tokenFile, Format: audit.FormatCloudEvents})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), ev); err != nil {
		t.Fatalf("resend after restart: %v, want acknowledged as a duplicate", err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	c := &auditreceiver.Client{
		URL:   p.url,
		Token: "tok-1",
		HTTP:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}
	st, err := c.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 1 || st.Counters.Duplicates != 1 {
		t.Errorf("state after restart = %+v, want 1 event and 1 duplicate", st)
	}
	events, err := c.Events(context.Background(), "scale-web")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Errorf("events = %s, want one", events)
	}
	p.stop(t)
}

// writeServerCertificate writes a CA and a certificate for 127.0.0.1 signed by it, and
// returns the CA file, the certificate file and the key file.
func writeServerCertificate(t *testing.T, dir string) (string, string, string) {
	t.Helper()
	p := testpki.New(t, dir)
	certFile, keyFile := p.WritePair(t, p.Server, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	return p.CAFile, certFile, keyFile
}

// TestListPrintsALinePerEvent stores an event in each format and checks -list's table.
func TestListPrintsALinePerEvent(t *testing.T) {
	recv, err := auditreceiver.New(filepath.Join(t.TempDir(), "events.jsonl"), auditreceiver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = recv.Close() })
	srv := httptest.NewServer(recv.Handler())
	t.Cleanup(srv.Close)

	events := []struct {
		format audit.Format
		ev     audit.Event
	}{
		{audit.FormatKubernaut, audit.Event{EventType: audit.EventType, EventID: "e-1", ExecutionName: "scale-web", ExecutionNamespace: "team-a",
			ActionType: "scale-deployment", Phase: "Completed", Reason: "Succeeded", Requester: &audit.Requester{Username: "alice"},
			Attempts: []audit.Attempt{{Number: 1}}}},
		{audit.FormatCloudEvents, audit.Event{EventType: audit.EventType, EventID: "e-2", ExecutionName: "drain", ExecutionNamespace: "team-b",
			ActionType: "drain-node", Phase: "Failed", Reason: "MaxRetriesExceeded", Attempts: []audit.Attempt{{Number: 1}, {Number: 2}}}},
	}
	for _, e := range events {
		s, err := audit.NewSender(audit.Config{URL: srv.URL, Format: e.format})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), e.ev); err != nil {
			t.Fatal(err)
		}
	}

	var out bytes.Buffer
	if err := list(context.Background(), &out, srv.URL, "", ""); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"NAMESPACE", "EXECUTION", "ACTION", "PHASE", "REASON", "REQUESTER", "ATTEMPTS", "EVENT", "ID"},
		{"team-a", "scale-web", "scale-deployment", "Completed", "Succeeded", "alice", "1", "e-1"},
		{"team-b", "drain", "drain-node", "Failed", "MaxRetriesExceeded", "-", "2", "e-2"},
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("-list printed\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, line := range lines {
		if got := strings.Fields(line); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d: %q, want the fields %q", i, line, want[i])
		}
	}
}
