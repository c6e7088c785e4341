// Package pki generates the throw-away certificates of a benchmark run: one ECDSA P-256 root, a
// server certificate for the server-side proxy of every pair, and a client certificate the
// client-side proxy presents (mutual TLS). Files are written as PEM into a directory the caller
// owns and removes.
//
// Only the benchmark harness imports pki. Generate is safe to call concurrently with distinct
// directories.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// ServerName is the DNS name in the server certificate; client-side proxies send it as SNI and
// verify it.
const ServerName = "b.bench.local"

// Files are the paths of the generated PEM files.
type Files struct {
	CA string // root certificate, the trust anchor of both sides
	// ServerCert and ServerKey are the server-side proxy's certificate and key; ServerPEM holds
	// both (certificate first), the form HAProxy wants.
	ServerCert, ServerKey, ServerPEM string
	// ClientCert and ClientKey are the client-side proxy's certificate and key; ClientPEM holds both.
	ClientCert, ClientKey, ClientPEM string
}

// InDir returns the paths Generate writes in dir, without touching the disk.
func InDir(dir string) Files {
	return Files{
		CA:         filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ServerPEM:  filepath.Join(dir, "server.pem"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
		ClientPEM:  filepath.Join(dir, "client.pem"),
	}
}

// Generate writes a fresh root, server and client certificate (ECDSA P-256, valid for a day)
// into dir.
func Generate(dir string) (Files, error) {
	f := InDir(dir)
	now := time.Now().Add(-time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("generate root key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft bench root"},
		NotBefore:             now,
		NotAfter:              now.Add(25 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("sign root: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, fmt.Errorf("parse root: %w", err)
	}
	if err := writePEM(f.CA, pemBlock("CERTIFICATE", caDER)); err != nil {
		return Files{}, err
	}
	leaves := []struct {
		cert, key, both string
		tmpl            *x509.Certificate
	}{
		{f.ServerCert, f.ServerKey, f.ServerPEM, &x509.Certificate{
			SerialNumber: big.NewInt(2),
			Subject:      pkix.Name{CommonName: ServerName},
			DNSNames:     []string{ServerName},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			URIs:         []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/echo"}},
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{f.ClientCert, f.ClientKey, f.ClientPEM, &x509.Certificate{
			SerialNumber: big.NewInt(3),
			Subject:      pkix.Name{CommonName: "a.bench.local"},
			DNSNames:     []string{"a.bench.local"},
			URIs:         []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/client"}},
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		}},
	}
	for _, l := range leaves {
		l.tmpl.NotBefore, l.tmpl.NotAfter = now, now.Add(25*time.Hour)
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Files{}, fmt.Errorf("generate key for %s: %w", l.tmpl.Subject.CommonName, err)
		}
		der, err := x509.CreateCertificate(rand.Reader, l.tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return Files{}, fmt.Errorf("sign %s: %w", l.tmpl.Subject.CommonName, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return Files{}, fmt.Errorf("marshal key of %s: %w", l.tmpl.Subject.CommonName, err)
		}
		certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER)
		for _, w := range []struct {
			path string
			data []byte
		}{{l.cert, certPEM}, {l.key, keyPEM}, {l.both, append(append([]byte{}, certPEM...), keyPEM...)}} {
			if err := writePEM(w.path, w.data); err != nil {
				return Files{}, err
			}
		}
	}
	return f, nil
}

// ServerTLS returns the server side's TLS configuration: TLS 1.3 only, X25519 only, client
// certificates required and verified against the root.
func (f Files) ServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	pool, err := f.pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
	}, nil
}

// ClientTLS returns the client side's TLS configuration: TLS 1.3 only, X25519 only, presenting
// the client certificate and verifying ServerName against the root.
func (f Files) ClientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("load client certificate: %w", err)
	}
	pool, err := f.pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		ServerName:       ServerName,
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
	}, nil
}

func (f Files) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("read root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificate in %s", f.CA)
	}
	return pool, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
