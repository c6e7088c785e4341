package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"weft.dev/weft/bench/internal/pki"
)

// HAProxy is a pair of HAProxy processes (Debian package haproxy), each with one thread.
type HAProxy struct{}

// Name implements Peer.
func (HAProxy) Name() string { return "haproxy" }

// Check implements Peer.
func (HAProxy) Check() error {
	if _, err := lookBinary("haproxy"); err != nil {
		return fmt.Errorf("%w: install it with `apt-get install haproxy` (or run bench/setup.sh)", err)
	}
	return nil
}

// Version implements Peer.
func (HAProxy) Version(ctx context.Context) string {
	bin, err := lookBinary("haproxy")
	if err != nil {
		return ""
	}
	return firstLine(ctx, bin, "-v")
}

// HAProxy 2.6 refuses "curves" on a server line; OpenSSL offers X25519 first by default, and
// the server side (B) accepts nothing else.
var haproxyConf = template.Must(template.New("haproxy").Parse(`
global
	nbthread 1
	maxconn 8192
	tune.ssl.default-dh-param 2048
defaults
	mode http
	timeout connect 5s
	timeout client 300s
	timeout server 300s
	timeout http-keep-alive 300s
	option http-keep-alive
{{if eq .Side "a"}}
frontend a
	bind {{.Listen}}
	default_backend b
backend b
	http-reuse always
	server b {{.Upstream}} ssl verify required ca-file {{.PKI.CA}} crt {{.PKI.ClientPEM}} sni str({{.ServerName}}) verifyhost {{.ServerName}} ssl-min-ver TLSv1.3 alpn http/1.1
{{else}}
frontend b
	bind {{.Listen}} ssl crt {{.PKI.ServerPEM}} ca-file {{.PKI.CA}} verify required ssl-min-ver TLSv1.3 curves X25519 alpn http/1.1
	default_backend echo
backend echo
	http-reuse always
	server echo {{.Upstream}}
{{end}}
`))

// Start implements Peer.
func (HAProxy) Start(ctx context.Context, env Env) (*Pair, error) {
	bin, err := lookBinary("haproxy")
	if err != nil {
		return nil, err
	}
	portA, err := FreePort()
	if err != nil {
		return nil, err
	}
	portB, err := FreePort()
	if err != nil {
		return nil, err
	}
	start := func(side, listen, upstream string) func() (*Proc, error) {
		return func() (*Proc, error) {
			conf := filepath.Join(env.Dir, "haproxy-"+side+".cfg")
			f, err := os.Create(conf)
			if err != nil {
				return nil, fmt.Errorf("write haproxy config: %w", err)
			}
			err = haproxyConf.Execute(f, map[string]any{
				"Side": side, "Listen": listen, "Upstream": upstream, "PKI": env.PKI, "ServerName": pki.ServerName,
			})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("write haproxy config: %w", err)
			}
			// -db: stay in the foreground, one process; no "log" line anywhere: logs off.
			return StartProc("haproxy-"+side, env.Dir, bin, []string{"-db", "-f", conf}, nil)
		}
	}
	return startPair(ctx, "http://"+portA+"/", portB, start("b", portB, env.Echo), start("a", portA, portB))
}
