// Package identity is the proxy's side of workload identity: it keeps the
// proxy's certificate. It generates an ECDSA P-256 key in memory (never
// written anywhere, never sent), asks the controller's Identity API to
// certify it with the workload's proof of identity (a token), and renews the
// certificate at about 70% of its lifetime, with a fresh key each time. The
// previous certificate stays in use until a new one has arrived, so a
// controller outage shorter than the remaining lifetime is invisible.
//
// The Manager is an mtls.CertSource: give it to mtls.ServerConfig and
// mtls.ClientConfig, and handshakes use the newest certificate without a
// restart. Only proxy packages import identity; it must not import the
// controller. All methods of Manager are safe for concurrent use.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/api/identityv1"
	"weft.dev/weft/internal/mtls"
)

// Config configures a Manager.
type Config struct {
	// ControllerAddr is the controller's gRPC address, host:port. Required.
	ControllerAddr string
	// TrustDomain names the mesh; empty means "cluster.local". It only
	// derives the default ControllerID.
	TrustDomain string
	// ControllerID is the SPIFFE ID the controller's serving certificate
	// must carry. Empty means spiffe://<TrustDomain>/ns/weft/sa/weft-controller.
	ControllerID string
	// Bundle holds the trust anchors the controller is verified against.
	// Required. The Manager replaces its anchors with those the controller
	// returns, so an anchor rotation reaches the proxy.
	Bundle *mtls.Bundle
	// Token is the proof of identity. If TokenFile is set instead, the file
	// is read before every request, so a rotated token is picked up.
	Token     string
	TokenFile string
	// ProxyID names the proxy in the controller's logs, e.g. "web-0".
	ProxyID string
	// ExpectedID, when set, is the only SPIFFE ID the proxy accepts in its
	// own certificate; a certificate for another identity is refused.
	ExpectedID string
	// RenewFraction of the remaining lifetime after which the certificate is
	// renewed. Zero means 0.7.
	RenewFraction float64
	// RetryMin and RetryMax bound the jittered exponential backoff after a
	// failed request. Zero means 500ms and 30s.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one Certify call. Zero means 30s.
	RequestTimeout time.Duration
	// Logger receives renewals and failures. Nil means slog.Default().
	Logger *slog.Logger
}

// Manager keeps the proxy's certificate. Build it with New, start it with
// Run.
type Manager struct {
	cfg          Config
	controllerID string
	log          *slog.Logger

	cur      mtls.Current
	notAfter atomic.Int64 // Unix nanoseconds of the current leaf's expiry; 0 before the first
	id       atomic.Pointer[string]
	renewals atomic.Uint64
	failures atomic.Uint64
	// mutual is whether requests for a certificate present the current
	// one: true after a success, false after a failure, so a certificate
	// the controller no longer accepts can never lock the proxy out.
	mutual atomic.Bool

	ready     chan struct{}
	readyOnce sync.Once
}

var _ mtls.CertSource = (*Manager)(nil)

// New checks cfg and returns a Manager. It does no I/O.
func New(cfg Config) (*Manager, error) {
	if cfg.ControllerAddr == "" {
		return nil, errors.New("proxy identity: no controller address; set the controller's host:port")
	}
	if cfg.Bundle == nil || cfg.Bundle.Pool() == nil {
		return nil, errors.New("proxy identity: no trust anchors; give the mesh's trust anchor PEM file")
	}
	if cfg.Token == "" && cfg.TokenFile == "" {
		return nil, errors.New("proxy identity: no proof of identity; give a token or a token file")
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.ControllerID == "" {
		cfg.ControllerID = "spiffe://" + cfg.TrustDomain + "/ns/weft/sa/weft-controller"
	}
	if err := mtls.ParseID(cfg.ControllerID); err != nil {
		return nil, fmt.Errorf("proxy identity: controller identity: %w", err)
	}
	if cfg.ExpectedID != "" {
		if err := mtls.ParseID(cfg.ExpectedID); err != nil {
			return nil, fmt.Errorf("proxy identity: expected identity: %w", err)
		}
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		cfg.RenewFraction = 0.7
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{
		cfg:          cfg,
		controllerID: cfg.ControllerID,
		log:          log.With("component", "identity"),
		ready:        make(chan struct{}),
	}, nil
}

// Certificate returns the current certificate (leaf, issuer chain, key).
func (m *Manager) Certificate() (*tls.Certificate, error) { return m.cur.Certificate() }

// Ready is closed once the first certificate is held.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// NotAfter is the current certificate's expiry; zero before the first.
func (m *Manager) NotAfter() time.Time {
	if n := m.notAfter.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ID is the SPIFFE ID in the current certificate; empty before the first.
func (m *Manager) ID() string {
	if p := m.id.Load(); p != nil {
		return *p
	}
	return ""
}

// Renewals counts certificates received after the first.
func (m *Manager) Renewals() uint64 { return m.renewals.Load() }

// Failures counts failed certificate requests.
func (m *Manager) Failures() uint64 { return m.failures.Load() }

// Bundle is the trust bundle, kept current from the controller's answers.
func (m *Manager) Bundle() *mtls.Bundle { return m.cfg.Bundle }

// ControlTLSConfig is the TLS configuration for any connection to the
// controller: the controller is verified against the bundle and its SPIFFE
// ID; the proxy's certificate is presented once held (mTLS).
func (m *Manager) ControlTLSConfig() *tls.Config {
	return mtls.ControlClientConfig(m, m.cfg.Bundle, m.controllerID)
}

// ControlCredentials is ControlTLSConfig for grpc.WithTransportCredentials,
// presenting the leaf alone to a controller that holds its issuer (see
// mtls.ControlCredentials).
func (m *Manager) ControlCredentials() credentials.TransportCredentials {
	return mtls.ControlCredentials(m, m.cfg.Bundle, m.controllerID)
}

// Run requests the first certificate, then renews it, until ctx ends. It
// returns nil when ctx ends and an error only if the gRPC client cannot be
// built.
//
// The first request is server-authenticated only: the token is the proof.
// Each request after a success goes over a new connection, which presents
// the current certificate, so renewals are mutually authenticated and the
// controller can check that the token and the certificate agree.
func (m *Manager) Run(ctx context.Context) error {
	var conn *grpc.ClientConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	backoff := m.cfg.RetryMin
	for {
		if conn == nil {
			var err error
			creds := mtls.ControlCredentials(renewalCert{m}, m.cfg.Bundle, m.controllerID)
			conn, err = grpc.NewClient(m.cfg.ControllerAddr, grpc.WithTransportCredentials(creds))
			if err != nil {
				return fmt.Errorf("proxy identity: controller %s: %w", m.cfg.ControllerAddr, err)
			}
		}
		var wait time.Duration
		renewIn, err := m.certify(ctx, identityv1.NewIdentityClient(conn))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.failures.Add(1)
			// Retry over a new connection with the token alone.
			m.mutual.Store(false)
			conn.Close()
			conn = nil
			wait = jitter(backoff)
			backoff = min(backoff*2, m.cfg.RetryMax)
			m.log.WarnContext(ctx, "certificate request failed; retrying", "controller", m.cfg.ControllerAddr,
				"retry_in", wait, "current_not_after", m.NotAfter(), "err", err)
		} else {
			backoff = m.cfg.RetryMin
			// Jitter down by up to 10% so proxies started together spread
			// their renewals.
			wait = renewIn - time.Duration(rand.Float64()*0.1*float64(renewIn))
			// The next request gets a connection presenting the new
			// certificate.
			m.mutual.Store(true)
			conn.Close()
			conn = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// renewalCert is the certificate source of certificate requests: the
// current certificate while mutual, none otherwise.
type renewalCert struct{ m *Manager }

func (r renewalCert) Certificate() (*tls.Certificate, error) {
	if !r.m.mutual.Load() {
		return nil, errors.New("certificate request without client certificate")
	}
	return r.m.cur.Certificate()
}

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

func (m *Manager) token() (string, error) {
	if m.cfg.TokenFile == "" {
		return m.cfg.Token, nil
	}
	b, err := os.ReadFile(m.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// certify obtains one certificate and installs it. It returns how long to
// wait before renewing.
func (m *Manager) certify(ctx context.Context, client identityv1.IdentityClient) (time.Duration, error) {
	tok, err := m.token()
	if err != nil {
		return 0, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return 0, fmt.Errorf("generate key: %w", err)
	}
	// The CSR carries only the public key: the controller takes the
	// identity from the token and ignores everything else.
	csr, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return 0, fmt.Errorf("certificate request: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
	defer cancel()
	resp, err := client.Certify(rctx, &identityv1.CertifyRequest{CsrDer: csr, Token: tok, ProxyId: m.cfg.ProxyID})
	if err != nil {
		return 0, fmt.Errorf("certify at %s: %w", m.cfg.ControllerAddr, err)
	}
	cert, anchors, id, err := m.check(resp, key)
	if err != nil {
		return 0, fmt.Errorf("controller's answer refused: %w", err)
	}
	received := time.Now()
	if err := m.cfg.Bundle.Set(anchors); err != nil {
		return 0, fmt.Errorf("controller's trust anchors: %w", err)
	}
	m.cur.Store(cert)
	m.notAfter.Store(cert.Leaf.NotAfter.UnixNano())
	m.id.Store(&id)
	first := false
	m.readyOnce.Do(func() { first = true; close(m.ready) })
	if !first {
		m.renewals.Add(1)
	}
	m.log.InfoContext(ctx, "certificate received", "identity", id, "not_after", cert.Leaf.NotAfter,
		"serial", cert.Leaf.SerialNumber.Text(16), "renewal", !first)
	return time.Duration(float64(cert.Leaf.NotAfter.Sub(received)) * m.cfg.RenewFraction), nil
}

// check verifies the controller's answer before anything of it is used:
// the chain must hold our key, verify to the anchors it came with, be fit
// for both server and client authentication, and (if configured) name the
// expected identity. A broken answer leaves the current certificate and
// bundle untouched.
func (m *Manager) check(resp *identityv1.CertifyResponse, key *ecdsa.PrivateKey) (*tls.Certificate, []*x509.Certificate, string, error) {
	if len(resp.GetChainDer()) == 0 {
		return nil, nil, "", errors.New("no certificate chain")
	}
	chain := make([]*x509.Certificate, 0, len(resp.GetChainDer()))
	for i, d := range resp.GetChainDer() {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, nil, "", fmt.Errorf("chain certificate %d: %w", i, err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, nil, "", errors.New("the certificate is not for this proxy's key")
	}
	anchors := make([]*x509.Certificate, 0, len(resp.GetTrustAnchorsDer()))
	for i, d := range resp.GetTrustAnchorsDer() {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, nil, "", fmt.Errorf("trust anchor %d: %w", i, err)
		}
		anchors = append(anchors, c)
	}
	b, err := mtls.NewBundle(anchors...)
	if err != nil {
		return nil, nil, "", err
	}
	id, err := mtls.VerifyPeer(chain, b, mtls.ServerAuth, m.cfg.ExpectedID)
	if err != nil {
		return nil, nil, "", err
	}
	if _, err := mtls.VerifyPeer(chain, b, mtls.ClientAuth, m.cfg.ExpectedID); err != nil {
		return nil, nil, "", err
	}
	return &tls.Certificate{Certificate: resp.GetChainDer(), PrivateKey: key, Leaf: leaf}, anchors, id, nil
}
