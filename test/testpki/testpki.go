// Package testpki makes a throwaway certificate authority for tests: a CA, a server certificate
// for 127.0.0.1 and a client certificate, written to files where a program under test reads them.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA with a server certificate for 127.0.0.1 and a client certificate; the CA and the
// client pair are written to files.
type PKI struct {
	// CA is the authority's certificate; Pool holds it.
	CA   *x509.Certificate
	Pool *x509.CertPool
	// Server is a server certificate for 127.0.0.1, signed by CA.
	Server tls.Certificate
	// CAFile, ClientCertFile and ClientKeyFile are PEM files (ca.crt, tls.crt, tls.key in dir).
	CAFile, ClientCertFile, ClientKeyFile string

	caKey *ecdsa.PrivateKey
}

// New makes a PKI, writing its files into dir.
func New(t testing.TB, dir string) *PKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, caKey: key, Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	p.CAFile = filepath.Join(dir, "ca.crt")
	WritePEM(t, p.CAFile, "CERTIFICATE", der)
	p.Server = p.Issue(t, "server", true)
	p.ClientCertFile, p.ClientKeyFile = p.WritePair(t, p.Issue(t, "client", false), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	return p
}

// Issue returns a certificate signed by the CA, for a server on 127.0.0.1 or for a client.
func (p *PKI) Issue(t testing.TB, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WritePair writes a certificate and its key as PEM files and returns their paths.
func (p *PKI) WritePair(t testing.TB, c tls.Certificate, certFile, keyFile string) (string, string) {
	t.Helper()
	WritePEM(t, certFile, "CERTIFICATE", c.Certificate[0])
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	WritePEM(t, keyFile, "EC PRIVATE KEY", key)
	return certFile, keyFile
}

// WritePEM writes one PEM block.
func WritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
