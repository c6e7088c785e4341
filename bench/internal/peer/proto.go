package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"weft.dev/weft/bench/internal/pki"
	"weft.dev/weft/internal/config"
)

// ProtoPeer is a peer that can also carry protocols other than HTTP/1.1 between its proxies:
// HTTP/2 and gRPC (h2c in at A, h2 over TLS 1.3 with the client certificate between A and B,
// h2c to the application) or TCP (plain in at A, TLS 1.3 with the client certificate between
// the pair, plain to the application).
type ProtoPeer interface {
	Peer
	// Carries returns nil when the pair can carry proto (config.ProtocolHTTP2, ProtocolGRPC or
	// ProtocolTCP) and otherwise says why it cannot.
	Carries(proto config.Protocol) error
	// StartProtocol launches the pair for proto and returns once both proxies accept
	// connections; the caller checks the first exchange itself. Pair.URL is A's host:port.
	StartProtocol(ctx context.Context, env Env, proto config.Protocol) (*Pair, error)
}

// ProtoPeers returns the peers of All that carry other protocols, HAProxy first (Weft's pairs
// are started by the protocol scenarios themselves).
func ProtoPeers() []ProtoPeer {
	return []ProtoPeer{HAProxy{}, Nginx{}, GoProxy{}, Caddy{}}
}

// ProtocolName is the name under which p's pair for proto is reported: the Go pair is a
// ReverseProxy for HTTP/2 and gRPC, and a TLS relay for TCP.
func ProtocolName(p Peer, proto config.Protocol) string {
	if _, ok := p.(GoProxy); ok && proto == config.ProtocolTCP {
		return "go relay"
	}
	return p.Name()
}

// errProtocol is returned by Carries for a protocol no pair knows.
func errProtocol(proto config.Protocol) error {
	return fmt.Errorf("unknown protocol %q (want http2, grpc or tcp)", proto)
}

// startSides picks two ports and starts the pair through startListening: side "b" listening on
// B's port in front of the echo application, side "a" on A's port in front of B.
func startSides(ctx context.Context, env Env, start func(side, listen, upstream string) (*Proc, error)) (*Pair, error) {
	portA, portB, err := twoPorts()
	if err != nil {
		return nil, err
	}
	return startListening(ctx, portA, portB,
		func() (*Proc, error) { return start("b", portB, env.Echo) },
		func() (*Proc, error) { return start("a", portA, portB) })
}

// startListening starts B then A and waits until both accept TCP connections, stopping both if
// the pair does not come up within 20 s.
func startListening(ctx context.Context, portA, portB string, startB, startA func() (*Proc, error)) (*Pair, error) {
	b, err := startB()
	if err != nil {
		return nil, err
	}
	a, err := startA()
	if err != nil {
		_ = b.Stop()
		return nil, err
	}
	pair := &Pair{URL: portA, A: a, B: b, BAddr: portB}
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range []string{portB, portA} {
		for {
			for _, p := range []*Proc{a, b} {
				if p.Exited() {
					_ = pair.Stop()
					return nil, fmt.Errorf("%s exited during start-up: %v; log %s ends with: %s", p.Name, p.err, p.Log, p.Tail())
				}
			}
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				_ = pair.Stop()
				return nil, fmt.Errorf("%s not listening after 20s: %w; %s log: %s; %s log: %s", addr, err, a.Name, a.Tail(), b.Name, b.Tail())
			}
			select {
			case <-ctx.Done():
				_ = pair.Stop()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return pair, nil
}

// writeConf executes t with data into path.
func writeConf(t *template.Template, path string, data map[string]any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	err = t.Execute(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// twoPorts returns two free loopback ports, for A and B.
func twoPorts() (string, string, error) {
	a, err := FreePort()
	if err != nil {
		return "", "", err
	}
	b, err := FreePort()
	return a, b, err
}

// HAProxy: "proto h2" on the plaintext bind and server, "alpn h2" on the TLS lines; "mode tcp"
// with ssl between the pair for TCP. The pair settings are the HTTP/1.1 pair's.
var haproxyProtoConf = template.Must(template.New("haproxy-proto").Parse(`
global
	nbthread 1
	maxconn 8192
defaults
	mode {{if .TCP}}tcp{{else}}http{{end}}
	timeout connect 5s
	timeout client 300s
	timeout server 300s
{{- if not .TCP}}
	timeout http-keep-alive 300s
	option http-keep-alive
{{- end}}
{{if eq .Side "a"}}
frontend a
	bind {{.Listen}}{{if not .TCP}} proto h2{{end}}
	default_backend b
backend b
{{- if not .TCP}}
	http-reuse always
{{- end}}
	server b {{.Upstream}} ssl verify required ca-file {{.PKI.CA}} crt {{.PKI.ClientPEM}} sni str({{.ServerName}}) verifyhost {{.ServerName}} ssl-min-ver TLSv1.3{{if not .TCP}} alpn h2 proto h2{{end}}
{{else}}
frontend b
	bind {{.Listen}} ssl crt {{.PKI.ServerPEM}} ca-file {{.PKI.CA}} verify required ssl-min-ver TLSv1.3 curves X25519{{if not .TCP}} alpn h2 proto h2{{end}}
	default_backend app
backend app
{{- if not .TCP}}
	http-reuse always
{{- end}}
	server app {{.Upstream}}{{if not .TCP}} proto h2{{end}}
{{end}}
`))

// Carries implements ProtoPeer: HAProxy carries all three.
func (HAProxy) Carries(proto config.Protocol) error {
	switch proto {
	case config.ProtocolHTTP2, config.ProtocolGRPC, config.ProtocolTCP:
		return nil
	}
	return errProtocol(proto)
}

// StartProtocol implements ProtoPeer.
func (h HAProxy) StartProtocol(ctx context.Context, env Env, proto config.Protocol) (*Pair, error) {
	if err := h.Carries(proto); err != nil {
		return nil, err
	}
	bin, err := lookBinary("haproxy")
	if err != nil {
		return nil, err
	}
	return startSides(ctx, env, func(side, listen, upstream string) (*Proc, error) {
		conf := filepath.Join(env.Dir, "haproxy-"+side+".cfg")
		if err := writeConf(haproxyProtoConf, conf, map[string]any{
			"Side": side, "Listen": listen, "Upstream": upstream, "PKI": env.PKI,
			"ServerName": pki.ServerName, "TCP": proto == config.ProtocolTCP,
		}); err != nil {
			return nil, err
		}
		return StartProc("haproxy-"+side, env.Dir, bin, []string{"-db", "-f", conf}, nil)
	})
}

// nginx: gRPC with grpc_pass (grpcs:// between the pair, grpc:// to the application), TCP with
// the stream module (Debian builds it as a dynamic module, packaged as libnginx-mod-stream).
var nginxProtoConf = template.Must(template.New("nginx-proto").Parse(`
{{if .TCP}}load_module {{.StreamModule}};{{end}}
{{if .Root}}user root;{{end}}
daemon off;
master_process on;
worker_processes 1;
pid {{.Dir}}/{{.Side}}.pid;
error_log {{.Dir}}/{{.Side}}-error.log error;
events { worker_connections 4096; }
{{if .TCP}}
stream {
{{- if eq .Side "a"}}
	server {
		listen {{.Listen}};
		proxy_pass {{.Upstream}};
		proxy_ssl on;
		proxy_ssl_certificate {{.PKI.ClientCert}};
		proxy_ssl_certificate_key {{.PKI.ClientKey}};
		proxy_ssl_trusted_certificate {{.PKI.CA}};
		proxy_ssl_verify on;
		proxy_ssl_name {{.ServerName}};
		proxy_ssl_server_name on;
		proxy_ssl_protocols TLSv1.3;
		proxy_ssl_conf_command Groups X25519;
		proxy_ssl_session_reuse on;
	}
{{- else}}
	server {
		listen {{.Listen}} ssl;
		ssl_certificate {{.PKI.ServerCert}};
		ssl_certificate_key {{.PKI.ServerKey}};
		ssl_client_certificate {{.PKI.CA}};
		ssl_verify_client on;
		ssl_protocols TLSv1.3;
		ssl_ecdh_curve X25519;
		proxy_pass {{.Upstream}};
	}
{{- end}}
}
{{else}}
http {
	access_log off;
	client_body_temp_path {{.Dir}}/{{.Side}}-body;
	proxy_temp_path {{.Dir}}/{{.Side}}-proxy;
	fastcgi_temp_path {{.Dir}}/{{.Side}}-fastcgi;
	uwsgi_temp_path {{.Dir}}/{{.Side}}-uwsgi;
	scgi_temp_path {{.Dir}}/{{.Side}}-scgi;
	keepalive_requests 1000000;
	keepalive_timeout 300s;
	upstream next {
		server {{.Upstream}};
		keepalive 128;
		keepalive_requests 1000000;
		keepalive_timeout 300s;
	}
{{- if eq .Side "a"}}
	server {
		listen {{.Listen}} http2;
		location / {
			grpc_pass grpcs://next;
			grpc_ssl_certificate {{.PKI.ClientCert}};
			grpc_ssl_certificate_key {{.PKI.ClientKey}};
			grpc_ssl_trusted_certificate {{.PKI.CA}};
			grpc_ssl_verify on;
			grpc_ssl_name {{.ServerName}};
			grpc_ssl_server_name on;
			grpc_ssl_protocols TLSv1.3;
			grpc_ssl_conf_command Groups X25519;
			grpc_ssl_session_reuse on;
		}
	}
{{- else}}
	server {
		listen {{.Listen}} ssl http2;
		ssl_certificate {{.PKI.ServerCert}};
		ssl_certificate_key {{.PKI.ServerKey}};
		ssl_client_certificate {{.PKI.CA}};
		ssl_verify_client on;
		ssl_protocols TLSv1.3;
		ssl_ecdh_curve X25519;
		location / {
			grpc_pass grpc://next;
		}
	}
{{- end}}
}
{{end}}
`))

// NginxStreamModule is where Debian's libnginx-mod-stream installs nginx's TCP proxy module.
const NginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// Carries implements ProtoPeer: gRPC, and TCP when the stream module is installed. nginx has
// no HTTP/2 upstream for plain HTTP/2: proxy_pass speaks HTTP/1.x to upstreams, and grpc_pass
// carries only gRPC.
func (Nginx) Carries(proto config.Protocol) error {
	switch proto {
	case config.ProtocolGRPC:
		return nil
	case config.ProtocolHTTP2:
		return errors.New("nginx cannot proxy plain HTTP/2 to an upstream (proxy_pass speaks HTTP/1.x upstream; grpc_pass carries only gRPC)")
	case config.ProtocolTCP:
		if _, err := os.Stat(NginxStreamModule); err != nil {
			return fmt.Errorf("nginx-light builds its stream (TCP) module as a dynamic module and %s is missing: install it with `apt-get install libnginx-mod-stream` (or run bench/setup.sh)", NginxStreamModule)
		}
		return nil
	}
	return errProtocol(proto)
}

// StartProtocol implements ProtoPeer.
func (n Nginx) StartProtocol(ctx context.Context, env Env, proto config.Protocol) (*Pair, error) {
	if err := n.Carries(proto); err != nil {
		return nil, err
	}
	bin, err := lookBinary("nginx")
	if err != nil {
		return nil, err
	}
	return startSides(ctx, env, func(side, listen, upstream string) (*Proc, error) {
		conf := filepath.Join(env.Dir, "nginx-"+side+".conf")
		if err := writeConf(nginxProtoConf, conf, map[string]any{
			"Root": os.Geteuid() == 0, "Dir": env.Dir, "Side": side, "Listen": listen,
			"Upstream": upstream, "PKI": env.PKI, "ServerName": pki.ServerName,
			"TCP": proto == config.ProtocolTCP, "StreamModule": NginxStreamModule,
		}); err != nil {
			return nil, err
		}
		return StartProc("nginx-"+side, env.Dir, bin, []string{"-p", env.Dir, "-c", conf, "-e", filepath.Join(env.Dir, side+"-error.log")}, nil)
	})
}

// Caddy: reverse_proxy with transport http versions 2 between the pair and h2c 2 to the
// application, h2c accepted at A, responses flushed at once (gRPC streaming).
var caddyProtoConf = template.Must(template.New("caddy-proto").Parse(`{
	admin off
	auto_https off
	persist_config off
	servers {
{{- if eq .Side "a"}}
		protocols h1 h2c
{{- else}}
		protocols h1 h2
		strict_sni_host insecure_off
{{- end}}
	}
}
{{if eq .Side "a"}}
http://:{{.Port}} {
	bind 127.0.0.1
	reverse_proxy https://{{.Upstream}} {
		flush_interval -1
		transport http {
			tls_client_auth {{.PKI.ClientCert}} {{.PKI.ClientKey}}
			tls_trust_pool file {{.PKI.CA}}
			tls_server_name {{.ServerName}}
			tls_curves x25519
			versions 2
			keepalive 300s
			keepalive_idle_conns 128
			keepalive_idle_conns_per_host 128
		}
	}
}
{{else}}
https://:{{.Port}} {
	bind 127.0.0.1
	tls {{.PKI.ServerCert}} {{.PKI.ServerKey}} {
		protocols tls1.3
		curves x25519
		client_auth {
			mode require_and_verify
			trust_pool file {{.PKI.CA}}
		}
	}
	reverse_proxy {{.Upstream}} {
		flush_interval -1
		transport http {
			versions h2c 2
			keepalive 300s
			keepalive_idle_conns 128
			keepalive_idle_conns_per_host 128
		}
	}
}
{{end}}
`))

// Carries implements ProtoPeer: HTTP/2 and gRPC; Caddy has no TCP proxy without a plugin.
func (Caddy) Carries(proto config.Protocol) error {
	switch proto {
	case config.ProtocolHTTP2, config.ProtocolGRPC:
		return nil
	case config.ProtocolTCP:
		return errors.New("caddy has no TCP proxy without a plugin (caddy-l4), which the benchmark's build does not include")
	}
	return errProtocol(proto)
}

// StartProtocol implements ProtoPeer.
func (c Caddy) StartProtocol(ctx context.Context, env Env, proto config.Protocol) (*Pair, error) {
	if err := c.Carries(proto); err != nil {
		return nil, err
	}
	bin := CaddyBinary()
	return startSides(ctx, env, func(side, listen, upstream string) (*Proc, error) {
		conf := filepath.Join(env.Dir, "Caddyfile-"+side)
		_, port, _ := cutPort(listen)
		if err := writeConf(caddyProtoConf, conf, map[string]any{
			"Side": side, "Port": port, "Upstream": upstream, "PKI": env.PKI, "ServerName": pki.ServerName,
		}); err != nil {
			return nil, err
		}
		home := filepath.Join(env.Dir, "caddy-"+side+"-home")
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, fmt.Errorf("create caddy home: %w", err)
		}
		return StartProc("caddy-"+side, env.Dir, bin, []string{"run", "--config", conf, "--adapter", "caddyfile"},
			[]string{"GOMAXPROCS=1", "HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home})
	})
}

// Carries implements ProtoPeer: the Go pair carries all three (a TLS relay for TCP).
func (GoProxy) Carries(proto config.Protocol) error {
	switch proto {
	case config.ProtocolHTTP2, config.ProtocolGRPC, config.ProtocolTCP:
		return nil
	}
	return errProtocol(proto)
}

// StartProtocol implements ProtoPeer.
func (g GoProxy) StartProtocol(ctx context.Context, env Env, proto config.Protocol) (*Pair, error) {
	if err := g.Carries(proto); err != nil {
		return nil, err
	}
	portA, portB, err := twoPorts()
	if err != nil {
		return nil, err
	}
	mode := "h2"
	if proto == config.ProtocolTCP {
		mode = "tcp"
	}
	name := strings.ReplaceAll(ProtocolName(g, proto), " ", "-")
	return startListening(ctx, portA, portB,
		g.starter(env, name+"-b", "server", portB, env.Echo, mode),
		g.starter(env, name+"-a", "client", portA, portB, mode))
}
