package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"weft.dev/weft/bench/internal/pki"
)

// Nginx is a pair of nginx processes (Debian package nginx-light), each with one worker.
type Nginx struct{}

// Name implements Peer.
func (Nginx) Name() string { return "nginx" }

// Check implements Peer.
func (Nginx) Check() error {
	if _, err := lookBinary("nginx"); err != nil {
		return fmt.Errorf("%w: install it with `apt-get install nginx-light` (or run bench/setup.sh)", err)
	}
	return nil
}

// Version implements Peer.
func (Nginx) Version(ctx context.Context) string {
	bin, err := lookBinary("nginx")
	if err != nil {
		return ""
	}
	return firstLine(ctx, bin, "-v")
}

var nginxConf = template.Must(template.New("nginx").Parse(`
{{if .Root}}user root;{{end}}
daemon off;
master_process on;
worker_processes 1;
pid {{.Dir}}/{{.Side}}.pid;
error_log {{.Dir}}/{{.Side}}-error.log error;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path {{.Dir}}/{{.Side}}-body;
	proxy_temp_path {{.Dir}}/{{.Side}}-proxy;
	fastcgi_temp_path {{.Dir}}/{{.Side}}-fastcgi;
	uwsgi_temp_path {{.Dir}}/{{.Side}}-uwsgi;
	scgi_temp_path {{.Dir}}/{{.Side}}-scgi;
	keepalive_requests 1000000;
	keepalive_timeout 300s;
{{if eq .Side "a"}}
	upstream b {
		server {{.Upstream}};
		keepalive 128;
		keepalive_requests 1000000;
		keepalive_timeout 300s;
	}
	server {
		listen {{.Listen}};
		location / {
			proxy_pass https://b;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
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
	}
{{else}}
	upstream echo {
		server {{.Upstream}};
		keepalive 128;
		keepalive_requests 1000000;
		keepalive_timeout 300s;
	}
	server {
		listen {{.Listen}} ssl;
		ssl_certificate {{.PKI.ServerCert}};
		ssl_certificate_key {{.PKI.ServerKey}};
		ssl_client_certificate {{.PKI.CA}};
		ssl_verify_client on;
		ssl_protocols TLSv1.3;
		ssl_ecdh_curve X25519;
		location / {
			proxy_pass http://echo;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
{{end}}
}
`))

// Start implements Peer.
func (Nginx) Start(ctx context.Context, env Env) (*Pair, error) {
	bin, err := lookBinary("nginx")
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
			conf := filepath.Join(env.Dir, "nginx-"+side+".conf")
			f, err := os.Create(conf)
			if err != nil {
				return nil, fmt.Errorf("write nginx config: %w", err)
			}
			err = nginxConf.Execute(f, map[string]any{
				"Root": os.Geteuid() == 0, "Dir": env.Dir, "Side": side, "Listen": listen,
				"Upstream": upstream, "PKI": env.PKI, "ServerName": pki.ServerName,
			})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("write nginx config: %w", err)
			}
			return StartProc("nginx-"+side, env.Dir, bin, []string{"-p", env.Dir, "-c", conf, "-e", filepath.Join(env.Dir, side+"-error.log")}, nil)
		}
	}
	return startPair(ctx, "http://"+portA+"/", portB, start("b", portB, env.Echo), start("a", portA, portB))
}
