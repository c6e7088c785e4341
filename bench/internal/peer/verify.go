package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	"weft.dev/weft/bench/internal/pki"
)

// VerifyMutualTLS checks that the server-side proxy at addr answers the echo only to a client
// that presents a certificate: plain HTTP and TLS without a client certificate must both fail
// (a refused handshake or an error status). It guards the comparison against a pair that
// silently runs without mutual TLS.
func VerifyMutualTLS(ctx context.Context, addr string, files pki.Files) error {
	withCert, err := files.ClientTLS()
	if err != nil {
		return err
	}
	noCert := withCert.Clone()
	noCert.Certificates = nil
	payload := bytes.Repeat([]byte("m"), 64)
	try := func(scheme string, cfg *tls.Config) (bool, error) {
		tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		client := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/", bytes.NewReader(payload))
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Equal(body, payload), nil
	}
	if ok, err := try("https", withCert); !ok {
		return fmt.Errorf("server-side proxy %s does not answer a client with a certificate: %v", addr, err)
	}
	if ok, _ := try("https", noCert); ok {
		return fmt.Errorf("server-side proxy %s answers a TLS client without a certificate: not mutual TLS", addr)
	}
	if ok, _ := try("http", nil); ok {
		return fmt.Errorf("server-side proxy %s answers plain HTTP: not TLS", addr)
	}
	return nil
}
