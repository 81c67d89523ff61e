// Command auditreceiver runs a storage service for the executor's audit events (see package
// auditreceiver): it stores each event once in a data file that survives restarts, lists them,
// and can be told to fail. Once it listens it prints AUDIT_URL=<base URL> on standard output;
// it runs until it is sent SIGINT or SIGTERM. Logs go to standard error as JSON.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "Address to listen on; port 0 picks a free one (see the AUDIT_URL line).")
	data := flag.String("data", ".work/audit/events.jsonl", "Data file: one stored event per line, read again at start.")
	certFile := flag.String("tls-cert", "", "PEM certificate to serve HTTPS with; plain HTTP when empty.")
	keyFile := flag.String("tls-key", "", "PEM key of -tls-cert.")
	tokenFile := flag.String("token-file", "", "File holding the bearer token requests must carry, read for every request; none required when empty.")
	flag.Parse()

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
