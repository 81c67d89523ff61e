package nodeagent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/klog/v2"
)

// serveLogs starts the HTTPS endpoint the API server calls for `kubectl logs`
// (GET /containerLogs/{namespace}/{pod}/{container}) on 127.0.0.1 and returns its port. The
// certificate is self-signed: without --kubelet-certificate-authority the API server does not
// verify it.
func (a *Agent) serveLogs() (int, error) {
	cert, err := selfSigned()
	if err != nil {
		return 0, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", a.containerLogs)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "log server stopped")
		}
	}()
	a.stopServer = func() { _ = srv.Close() }
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// containerLogs writes a container's log as a kubelet does, honouring tailLines, sinceSeconds,
// sinceTime, timestamps and limitBytes.
func (a *Agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	path := a.logPath(ns, name, container)
	if path == "" {
		http.Error(w, fmt.Sprintf("container %q in pod %s/%s is not known to this node", container, ns, name), http.StatusNotFound)
		return
	}
	lines, err := readLog(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	var since time.Time
	if s, err := strconv.Atoi(q.Get("sinceSeconds")); err == nil && s > 0 {
		since = time.Now().Add(-time.Duration(s) * time.Second)
	}
	if t, err := time.Parse(time.RFC3339, q.Get("sinceTime")); err == nil {
		since = t
	}
	if !since.IsZero() {
		kept := lines[:0]
		for _, l := range lines {
			if !l.Time.Before(since) {
				kept = append(kept, l)
			}
		}
		lines = kept
	}
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	var buf bytes.Buffer
	timestamps := q.Get("timestamps") == "true"
	for _, l := range lines {
		if timestamps {
			buf.WriteString(l.Time.Format(time.RFC3339Nano) + " ")
		}
		buf.WriteString(l.Content + "\n")
	}
	out := buf.Bytes()
	if n, err := strconv.Atoi(q.Get("limitBytes")); err == nil && n >= 0 && n < len(out) {
		out = out[:n]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(out)
}

// logPath finds the log file of a container of a pod the agent runs.
func (a *Agent) logPath(ns, name, container string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pods {
		if p.pod.Namespace != ns || p.pod.Name != name {
			continue
		}
		for _, c := range p.pod.Spec.Containers {
			if c.Name == container || (container == "" && len(p.pod.Spec.Containers) == 1) {
				return filepath.Join(p.dir, c.Name+".log")
			}
		}
	}
	return ""
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "local-node-agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
