package peer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"weft.dev/weft/bench/internal/pki"
)

// CaddyVersion is the Caddy release built from bench/tools/caddy.
const CaddyVersion = "v2.11.9"

// EnvCaddy names a Caddy binary to use instead of the cached build.
const EnvCaddy = "WEFTBENCH_CADDY"

// CaddyBinary is where bench/setup.sh caches the Caddy build: $WEFTBENCH_CADDY, else
// ~/.cache/weft-bench/caddy-<CaddyVersion>.
func CaddyBinary() string {
	if p := os.Getenv(EnvCaddy); p != "" {
		return p
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "cache")
	}
	return filepath.Join(dir, "weft-bench", "caddy-"+CaddyVersion)
}

// Caddy is a pair of Caddy processes with GOMAXPROCS=1, built from its Go module.
type Caddy struct{}

// Name implements Peer.
func (Caddy) Name() string { return "caddy" }

// Check implements Peer.
func (Caddy) Check() error {
	if _, err := os.Stat(CaddyBinary()); err != nil {
		return fmt.Errorf("caddy %s not built (%w): run `bash bench/setup.sh`, which builds bench/tools/caddy into %s", CaddyVersion, err, CaddyBinary())
	}
	return nil
}

// Version implements Peer.
func (Caddy) Version(ctx context.Context) string { return firstLine(ctx, CaddyBinary(), "version") }

var caddyConf = template.Must(template.New("caddy").Parse(`{
	admin off
	auto_https off
	persist_config off
	servers {
		protocols h1
{{- if eq .Side "b"}}
		# The client-side proxy forwards the client's Host, which differs from its SNI.
		strict_sni_host insecure_off
{{- end}}
	}
}
{{if eq .Side "a"}}
http://:{{.Port}} {
	bind 127.0.0.1
	reverse_proxy https://{{.Upstream}} {
		transport http {
			tls_client_auth {{.PKI.ClientCert}} {{.PKI.ClientKey}}
			tls_trust_pool file {{.PKI.CA}}
			tls_server_name {{.ServerName}}
			tls_curves x25519
			versions 1.1
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
		transport http {
			keepalive 300s
			keepalive_idle_conns 128
			keepalive_idle_conns_per_host 128
		}
	}
}
{{end}}
`))

// Start implements Peer.
func (Caddy) Start(ctx context.Context, env Env) (*Pair, error) {
	bin := CaddyBinary()
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
			conf := filepath.Join(env.Dir, "Caddyfile-"+side)
			f, err := os.Create(conf)
			if err != nil {
				return nil, fmt.Errorf("write Caddyfile: %w", err)
			}
			_, port, _ := cutPort(listen)
			err = caddyConf.Execute(f, map[string]any{
				"Side": side, "Port": port, "Upstream": upstream, "PKI": env.PKI, "ServerName": pki.ServerName,
			})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("write Caddyfile: %w", err)
			}
			home := filepath.Join(env.Dir, "caddy-"+side+"-home")
			if err := os.MkdirAll(home, 0o700); err != nil {
				return nil, fmt.Errorf("create caddy home: %w", err)
			}
			return StartProc("caddy-"+side, env.Dir, bin, []string{"run", "--config", conf, "--adapter", "caddyfile"},
				[]string{"GOMAXPROCS=1", "HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home})
		}
	}
	return startPair(ctx, "http://"+portA+"/", portB, start("b", portB, env.Echo), start("a", portA, portB))
}
