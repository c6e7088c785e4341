package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"weft.dev/weft/api/identityv1"
	ctlidentity "weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	webID = ctlidentity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web"}
	apiID = ctlidentity.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "api"}
)

// hangGuard bounds every wait; it is never a performance threshold.
const hangGuard = 60 * time.Second

// shortRenew is the renewal point of tests with 3-second leaves. x509
// times are whole seconds, so such a leaf lives 2 to 3 seconds; renewing
// after a quarter of it leaves a second and a half for a renewal on a slow,
// busy machine (the race detector, other tests).
const shortRenew = 0.25

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type roots struct{ anchor, cert, key []byte }

func genRoots(t *testing.T) roots {
	t.Helper()
	a, c, k, err := ctlidentity.GenerateRoots("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return roots{a, c, k}
}

func newCA(t *testing.T, r roots, cfg ctlidentity.CAConfig) *ctlidentity.CA {
	t.Helper()
	is, err := ctlidentity.LoadIssuer(r.anchor, r.cert, r.key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ctlidentity.NewCA(is, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// controller serves the Identity API over TLS on loopback until the test
// ends, as weft-controller does.
func controller(t *testing.T, ca *ctlidentity.CA, auth ctlidentity.Authenticator, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(mtls.ControlServerConfig(ca.ServingCerts(nil, nil), ca.Bundle()))))...)
	identityv1.RegisterIdentityServer(srv, ctlidentity.NewServer(ca, auth, discard()))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String()
}

// proxyBundle is the anchor file a proxy starts with: its own Bundle, not
// the controller's.
func proxyBundle(t *testing.T, r roots) *mtls.Bundle {
	t.Helper()
	b, err := mtls.ParseBundlePEM(r.anchor)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs m until the test ends.
func start(t *testing.T, m *identity.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitReady(t *testing.T, m *identity.Manager) {
	t.Helper()
	select {
	case <-m.Ready():
	case <-time.After(hangGuard):
		t.Fatalf("no certificate after %s (failures: %d)", hangGuard, m.Failures())
	}
}

// waitFor polls cond; the timeout is only a hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func issue(t *testing.T, tokens *ctlidentity.JoinTokens, id ctlidentity.Identity) string {
	t.Helper()
	tok, err := tokens.Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newManager(t *testing.T, cfg identity.Config) *identity.Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	m, err := identity.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFirstCertificate(t *testing.T) {
	r := genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{})
	tokens := ctlidentity.NewJoinTokens()
	addr := controller(t, ca, tokens)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(issue(t, tokens, webID)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, identity.Config{
		ControllerAddr: addr, Bundle: proxyBundle(t, r), TokenFile: tokFile, ProxyID: "web-0", ExpectedID: webID.String(),
	})
	if _, err := m.Certificate(); err == nil {
		t.Fatal("Certificate before Run succeeded")
	}
	start(t, m)
	waitReady(t, m)
	cert, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.ID(), webID.String(); got != want {
		t.Errorf("ID = %q, want %q", got, want)
	}
	if got, want := m.NotAfter(), cert.Leaf.NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", got, want)
	}
	if got := len(cert.Certificate); got != 2 {
		t.Errorf("chain of %d, want leaf and issuer", got)
	}
	if got := m.Renewals(); got != 0 {
		t.Errorf("Renewals = %d right after the first certificate", got)
	}
}

// flakyAuth fails the calls for whose numbers (from 1) fail is true, as an
// unreachable TokenReview would, and delegates the others.
type flakyAuth struct {
	next  ctlidentity.Authenticator
	fail  func(call int64) bool
	calls atomic.Int64
}

func (f *flakyAuth) Authenticate(ctx context.Context, tok string) (ctlidentity.Identity, error) {
	if f.fail(f.calls.Add(1)) {
		return ctlidentity.Identity{}, errors.New("token review unavailable")
	}
	return f.next.Authenticate(ctx, tok)
}

// TestRetryKeepsCertificate: failed requests are retried with backoff;
// while a renewal fails the proxy keeps presenting its current certificate.
func TestRetryKeepsCertificate(t *testing.T) {
	r := genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second})
	tokens := ctlidentity.NewJoinTokens()
	// Calls 1-2 fail (first certificate delayed), 3 succeeds, 4-5 fail
	// (the first renewal is retried), 6 succeeds.
	auth := &flakyAuth{next: tokens, fail: func(n int64) bool { return n == 1 || n == 2 || n == 4 || n == 5 }}
	m := newManager(t, identity.Config{ControllerAddr: controller(t, ca, auth), Bundle: proxyBundle(t, r), Token: issue(t, tokens, webID), RenewFraction: shortRenew})
	start(t, m)
	waitReady(t, m)
	first, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Failures(); got != 2 {
		t.Errorf("failures before the first certificate = %d, want 2", got)
	}
	var lost atomic.Int64
	waitFor(t, "a renewal", func() bool {
		if _, err := m.Certificate(); err != nil {
			lost.Add(1)
		}
		return m.Renewals() >= 1
	})
	if got := lost.Load(); got != 0 {
		t.Errorf("no certificate %d times during failed renewals", got)
	}
	if got := m.Failures(); got != 4 {
		t.Errorf("failures = %d, want 4", got)
	}
	second, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Error("renewal kept the same certificate")
	}
	if first.PrivateKey.(*ecdsa.PrivateKey).Equal(second.PrivateKey) {
		t.Error("renewal reused the private key")
	}
}

// TestNeverReady: a proxy that cannot get a certificate stays not ready.
func TestNeverReady(t *testing.T) {
	r, foreign := genRoots(t), genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{})
	tokens := ctlidentity.NewJoinTokens()
	addr := controller(t, ca, tokens)
	webTok := issue(t, tokens, webID)
	tests := []struct {
		name string
		cfg  identity.Config
	}{
		{"wrong token", identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, r), Token: "weftjt1_nope"}},
		{"controller with another identity", identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, r), Token: webTok,
			ControllerID: "spiffe://cluster.local/ns/weft/sa/impostor"}},
		{"controller outside the trust bundle", identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, foreign), Token: webTok}},
		{"certificate for another identity than expected", identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, r), Token: webTok,
			ExpectedID: apiID.String()}},
		{"missing token file", identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, r), TokenFile: filepath.Join(t.TempDir(), "none")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, tc.cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			waitFor(t, "three failures", func() bool { return m.Failures() >= 3 })
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			select {
			case <-m.Ready():
				t.Error("ready without a valid certificate")
			default:
			}
			if _, err := m.Certificate(); err == nil {
				t.Error("Certificate succeeded")
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	b, err := mtls.ParseBundlePEM(genRoots(t).anchor)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  identity.Config
		want string
	}{
		{"no address", identity.Config{Bundle: b, Token: "t"}, "no controller address"},
		{"no bundle", identity.Config{ControllerAddr: "x:1", Token: "t"}, "no trust anchors"},
		{"empty bundle", identity.Config{ControllerAddr: "x:1", Bundle: &mtls.Bundle{}, Token: "t"}, "no trust anchors"},
		{"no token", identity.Config{ControllerAddr: "x:1", Bundle: b}, "no proof of identity"},
		{"bad controller ID", identity.Config{ControllerAddr: "x:1", Bundle: b, Token: "t", ControllerID: "weft-controller"}, "not a SPIFFE ID"},
		{"bad expected ID", identity.Config{ControllerAddr: "x:1", Bundle: b, Token: "t", ExpectedID: "spiffe://x/"}, "empty path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := identity.New(tc.cfg)
			got := "<nil>"
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("New error = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

// TestRotationReachesProxy walks an issuer rotation: first the
// controller's bundle gains the new anchor (still signing with the old
// issuer) and the proxy's bundle follows at its next renewal; then the new
// issuer signs and the proxy, renewing, keeps getting certificates, with no
// failed request along the way.
func TestRotationReachesProxy(t *testing.T) {
	oldR, newR := genRoots(t), genRoots(t)
	short := ctlidentity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second}
	ca := newCA(t, oldR, short)
	both := append(append([]byte(nil), oldR.anchor...), newR.anchor...)
	step1, err := ctlidentity.LoadIssuer(both, oldR.cert, oldR.key)
	if err != nil {
		t.Fatal(err)
	}
	step2, err := ctlidentity.LoadIssuer(both, newR.cert, newR.key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := ctlidentity.NewJoinTokens()
	addr := controller(t, ca, tokens)
	bundle := proxyBundle(t, oldR)
	m := newManager(t, identity.Config{ControllerAddr: addr, Bundle: bundle, Token: issue(t, tokens, webID), RenewFraction: shortRenew})
	start(t, m)
	waitReady(t, m)

	if err := ca.Rotate(step1); err != nil {
		t.Fatal(err)
	}
	n := m.Renewals()
	waitFor(t, "a renewal after the bundle grew", func() bool { return m.Renewals() > n })
	if got := len(bundle.Anchors()); got != 2 {
		t.Fatalf("proxy anchors = %d, want old and new", got)
	}

	if err := ca.Rotate(step2); err != nil {
		t.Fatal(err)
	}
	n = m.Renewals()
	waitFor(t, "two renewals after the issuer changed", func() bool { return m.Renewals() >= n+2 })
	cert, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(cert.Certificate[1]), string(step2.Cert().Raw); got != want {
		t.Error("the proxy's certificate is not from the new issuer")
	}
	if got := m.Failures(); got != 0 {
		t.Errorf("failures during the rotation = %d, want 0", got)
	}
}

// TestRenewalUnderLoad: with 3-second leaves both proxies renew again and
// again while a client keeps opening mTLS connections to a server (and
// keeps using one long-lived connection); no handshake and no request
// fails, and the renewed certificates are the ones presented.
func TestRenewalUnderLoad(t *testing.T) {
	r := genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second})
	tokens := ctlidentity.NewJoinTokens()
	addr := controller(t, ca, tokens)
	serverBundle, clientBundle := proxyBundle(t, r), proxyBundle(t, r)
	srvM := newManager(t, identity.Config{ControllerAddr: addr, Bundle: serverBundle, Token: issue(t, tokens, webID), ProxyID: "web-0", RenewFraction: shortRenew})
	cliM := newManager(t, identity.Config{ControllerAddr: addr, Bundle: clientBundle, Token: issue(t, tokens, apiID), ProxyID: "api-0", RenewFraction: shortRenew})
	start(t, srvM)
	start(t, cliM)
	waitReady(t, srvM)
	waitReady(t, cliM)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerConfig(srvM, serverBundle))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var serverErrs atomic.Int64
	peers := sync.Map{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(hangGuard))
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					serverErrs.Add(1)
					t.Errorf("server handshake: %v", err)
					return
				}
				id, err := mtls.PeerIdentity(tc.ConnectionState())
				if err != nil || id != apiID.String() {
					serverErrs.Add(1)
					t.Errorf("server: peer %q, %v; want %s", id, err, apiID)
					return
				}
				peers.Store(tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), true)
				buf := make([]byte, 4)
				for {
					if _, err := io.ReadFull(tc, buf); err != nil {
						return
					}
					if _, err := tc.Write([]byte("pong")); err != nil {
						return
					}
				}
			}()
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()

	cliCfg := mtls.ClientConfig(cliM, clientBundle, webID.String(), []string{mtls.ALPNHTTP1})
	dial := func() (*tls.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: hangGuard}, Config: cliCfg}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(hangGuard))
		return c.(*tls.Conn), nil
	}
	ping := func(c *tls.Conn) error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "pong" {
			return errors.New("answer " + string(buf))
		}
		return nil
	}
	long, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()

	servers := map[string]bool{}
	var requests, failures int
	deadline := time.Now().Add(hangGuard)
	// Until each side renewed at least three times (about 6 seconds).
	for srvM.Renewals() < 3 || cliM.Renewals() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("renewals: server %d, client %d after %s", srvM.Renewals(), cliM.Renewals(), hangGuard)
		}
		c, err := dial()
		if err != nil {
			failures++
			t.Errorf("dial: %v", err)
			continue
		}
		servers[c.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
		if err := ping(c); err != nil {
			failures++
			t.Errorf("request: %v", err)
		}
		c.Close()
		if err := ping(long); err != nil {
			failures++
			t.Errorf("request on the long-lived connection: %v", err)
		}
		requests += 2
		time.Sleep(20 * time.Millisecond)
	}
	if failures != 0 || serverErrs.Load() != 0 {
		t.Errorf("%d client and %d server failures in %d requests", failures, serverErrs.Load(), requests)
	}
	// The server presented at least three different certificates and the
	// client did too: renewed certificates were used without a restart.
	if got := len(servers); got < 3 {
		t.Errorf("client saw %d server certificates, want at least 3", got)
	}
	clients := 0
	peers.Range(func(any, any) bool { clients++; return true })
	if clients < 3 {
		t.Errorf("server saw %d client certificates, want at least 3", clients)
	}
	t.Logf("%d requests, server renewals %d, client renewals %d", requests, srvM.Renewals(), cliM.Renewals())
}

// TestRenewalIsMutual: the first request carries no client certificate;
// every renewal presents the current one.
func TestRenewalIsMutual(t *testing.T) {
	r := genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second})
	tokens := ctlidentity.NewJoinTokens()
	var mu sync.Mutex // guards peers
	var peers []string
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		id, err := ctlidentity.PeerID(ctx)
		if err != nil {
			id = "none"
		}
		mu.Lock()
		peers = append(peers, id)
		mu.Unlock()
		return h(ctx, req)
	}
	addr := controller(t, ca, tokens, grpc.UnaryInterceptor(record))
	m := newManager(t, identity.Config{ControllerAddr: addr, Bundle: proxyBundle(t, r), Token: issue(t, tokens, webID), RenewFraction: shortRenew})
	start(t, m)
	waitFor(t, "two renewals", func() bool { return m.Renewals() >= 2 })
	mu.Lock()
	got := append([]string(nil), peers[:3]...)
	mu.Unlock()
	want := []string{"none", webID.String(), webID.String()}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("client identities seen by the controller = %v, want %v", got, want)
	}
}

// TestRecoversAfterExpiry: when the controller was unavailable until the
// proxy's certificate expired, the proxy gets a new one with its token
// (the expired certificate does not lock it out).
func TestRecoversAfterExpiry(t *testing.T) {
	r := genRoots(t)
	ca := newCA(t, r, ctlidentity.CAConfig{DefaultLifetime: 3 * time.Second, MaxLifetime: 3 * time.Second})
	tokens := ctlidentity.NewJoinTokens()
	var down atomic.Bool
	down.Store(true)
	auth := &flakyAuth{next: tokens, fail: func(n int64) bool { return n > 1 && down.Load() }}
	m := newManager(t, identity.Config{ControllerAddr: controller(t, ca, auth), Bundle: proxyBundle(t, r), Token: issue(t, tokens, webID)})
	start(t, m)
	waitReady(t, m)
	waitFor(t, "the certificate to expire during failures", func() bool {
		return m.Failures() >= 1 && time.Now().After(m.NotAfter().Add(100*time.Millisecond))
	})
	down.Store(false)
	waitFor(t, "a certificate after the outage", func() bool { return m.Renewals() >= 1 })
	if !m.NotAfter().After(time.Now()) {
		t.Errorf("certificate after the outage expires at %s, in the past", m.NotAfter())
	}
}
