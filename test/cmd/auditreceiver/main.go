// Command auditreceiver runs a storage service for the executor's audit events (see package
// auditreceiver): it stores each event once in a data file that survives restarts, lists them,
// and can be told to fail. Once it listens it prints AUDIT_URL=<base URL> on standard output;
// it runs until it is sent SIGINT or SIGTERM. Logs go to standard error as JSON.
//
// With -list <url> it serves nothing: it prints a line per event stored by the receiver at that
// URL, oldest first, and exits (make demo shows the demo's audit records with it).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "Address to listen on; port 0 picks a free one (see the AUDIT_URL line).")
	data := flag.String("data", ".work/audit/events.jsonl", "Data file: one stored event per line, read again at start.")
	certFile := flag.String("tls-cert", "", "PEM certificate to serve HTTPS with; plain HTTP when empty.")
	keyFile := flag.String("tls-key", "", "PEM key of -tls-cert.")
	tokenFile := flag.String("token-file", "", "File holding the bearer token requests must carry, read for every request; none required when empty. With -list, the token to send.")
	listURL := flag.String("list", "", "Serve nothing: print a line per event stored by the receiver at this URL (its AUDIT_URL), oldest first, and exit.")
	caFile := flag.String("ca-file", "", "With -list: PEM bundle of the CAs to trust for an https URL; the system's when empty.")
	flag.Parse()

	if *listURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := list(ctx, os.Stdout, *listURL, *caFile, *tokenFile)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "auditreceiver:", err)
			os.Exit(1)
		}
		return
	}

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(logger, *listen, *data, *certFile, *keyFile, *tokenFile); err != nil {
		logger.Error("auditreceiver failed", "error", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM, then shuts down and closes the data file.
func run(logger *slog.Logger, listen, data, certFile, keyFile, tokenFile string) error {
	if (certFile == "") != (keyFile == "") {
		return errors.New("-tls-cert and -tls-key must be given together")
	}
	if err := os.MkdirAll(filepath.Dir(data), 0o750); err != nil {
		return fmt.Errorf("creating the data folder: %w", err)
	}
	recv, err := auditreceiver.New(data, auditreceiver.Options{TokenFile: tokenFile, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		if err := recv.Close(); err != nil {
			logger.Error("closing the data file", "error", err)
		}
	}()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	srv := &http.Server{Handler: recv.Handler(), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() {
		if certFile != "" {
			served <- srv.ServeTLS(ln, certFile, keyFile)
			return
		}
		served <- srv.Serve(ln)
	}()
	url := scheme + "://" + ln.Addr().String()
	logger.Info("listening", "url", url, "data", data, "events", recv.State().Events)
	fmt.Printf("AUDIT_URL=%s\n", url)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		// Posts held back by a delay fault: drop them, as a crashing service would.
		logger.Info("closing the connections still open", "reason", err.Error())
		return srv.Close()
	}
	return nil
}

// list prints a line per event stored by the receiver at url, oldest first: the execution, its
// action, the outcome, the requester, the attempts and the event id.
func list(ctx context.Context, w io.Writer, url, caFile, tokenFile string) error {
	c := &auditreceiver.Client{URL: url}
	if caFile != "" {
		pem, err := os.ReadFile(caFile) //nolint:gosec // G304: the path is the caller's flag.
		if err != nil {
			return fmt.Errorf("reading the CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
		}
		c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile) //nolint:gosec // G304: the path is the caller's flag.
		if err != nil {
			return fmt.Errorf("reading the token: %w", err)
		}
		c.Token = strings.TrimSpace(string(b))
	}
	events, err := c.Events(ctx, "")
	if err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAMESPACE\tEXECUTION\tACTION\tPHASE\tREASON\tREQUESTER\tATTEMPTS\tEVENT ID")
	for _, raw := range events {
		ev, err := decodeEvent(raw)
		if err != nil {
			return err
		}
		requester := "-"
		if ev.Requester != nil && ev.Requester.Username != "" {
			requester = ev.Requester.Username
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", ev.ExecutionNamespace, ev.ExecutionName, ev.ActionType,
			ev.Phase, ev.Reason, requester, len(ev.Attempts), ev.EventID)
	}
	return tw.Flush()
}

// decodeEvent reads a stored event: the kubernaut format's JSON, or a structured CloudEvent
// whose data is that JSON.
func decodeEvent(raw json.RawMessage) (audit.Event, error) {
	var envelope struct {
		SpecVersion string          `json:"specversion"`
		Data        json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &envelope); err != nil {
		return audit.Event{}, fmt.Errorf("decoding a stored event: %w", err)
	}
	body := []byte(raw)
	if envelope.SpecVersion != "" {
		body = envelope.Data
	}
	var ev audit.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return audit.Event{}, fmt.Errorf("decoding a stored event: %w", err)
	}
	return ev, nil
}
