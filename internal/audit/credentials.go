package audit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// maxTokenBytes bounds the size of a bearer token file.
const maxTokenBytes = 16 * 1024

// readToken reads a bearer token from path. It is called for every request, so a rotated
// Secret takes effect with the next send, without a restart.
func readToken(path string) (string, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the path is the operator's configuration, a mounted Secret.
	if err != nil {
		return "", fmt.Errorf("reading bearer token: %w", err)
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading bearer token from %s: %w", path, err)
	}
	if len(b) > maxTokenBytes {
		return "", fmt.Errorf("bearer token file %s is larger than %d bytes", path, maxTokenBytes)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("bearer token file %s is empty", path)
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return "", fmt.Errorf("bearer token file %s holds whitespace or control characters inside the token", path)
	}
	return token, nil
}

// readCABundle returns a pool holding the PEM certificates of path.
func readCABundle(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's configuration, a mounted Secret.
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// fileStamp tells whether a file changed: its modification time and size.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// stat returns the stamp of path, following symbolic links as a mounted Secret's are.
func stat(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size()}, nil
}

// clientCertificate loads a client certificate and key and loads them again when either file
// changes, so a renewed certificate takes effect with the next connection.
type clientCertificate struct {
	certFile, keyFile string

	mu     sync.Mutex
	stamps [2]fileStamp
	cert   *tls.Certificate
}

// newClientCertificate loads the pair once, so a wrong configuration fails at start.
func newClientCertificate(certFile, keyFile string) (*clientCertificate, error) {
	c := &clientCertificate{certFile: certFile, keyFile: keyFile}
	if _, err := c.get(nil); err != nil {
		return nil, err
	}
	return c, nil
}

// get returns the current certificate, for tls.Config.GetClientCertificate. While a rotation
// is half done (the certificate and key do not match yet), it keeps the previous pair.
func (c *clientCertificate) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certStamp, err1 := stat(c.certFile)
	keyStamp, err2 := stat(c.keyFile)
	stamps := [2]fileStamp{certStamp, keyStamp}
	if c.cert != nil && err1 == nil && err2 == nil && stamps == c.stamps {
		return c.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil
		}
		return nil, fmt.Errorf("loading client certificate: %w", err)
	}
	c.cert, c.stamps = &pair, stamps
	return c.cert, nil
}
