package protocols

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/bench/internal/pki"
)

// Kinds of request/response load.
const (
	HTTP2      = "http2"
	GRPCUnary  = "grpc-unary"
	GRPCStream = "grpc-stream"
	TCPBulk    = "tcp-bulk"
)

// PayloadSize is the size of every request and answer of the paced load.
const PayloadSize = 1024

// Window is what one paced window or one bulk transfer measured.
type Window struct {
	Peer     string `json:"peer"`
	Protocol string `json:"protocol"`
	// Rep is the repetition, from 1 (0 in files written before repetitions: their only one).
	Rep      int     `json:"rep,omitempty"`
	Rate     float64 `json:"rate,omitempty"`
	Conns    int     `json:"conns"`
	Seconds  float64 `json:"seconds"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	// BadBodies counts answers whose bytes differ from what was sent.
	BadBodies     int64   `json:"bad_bodies"`
	FirstError    string  `json:"first_error,omitempty"`
	BytesSent     int64   `json:"bytes_sent"`
	BytesReceived int64   `json:"bytes_received"`
	Achieved      float64 `json:"achieved_rps,omitempty"`
	// Latency percentiles from the intended send time, ms.
	P50  float64 `json:"p50_ms,omitempty"`
	P90  float64 `json:"p90_ms,omitempty"`
	P99  float64 `json:"p99_ms,omitempty"`
	P999 float64 `json:"p999_ms,omitempty"`
	// MBps is the bulk transfer's payload rate (10^6 bytes per second, each direction).
	MBps float64 `json:"mb_per_s,omitempty"`
	// CPU seconds of proxies A and B over the window, their VmRSS at its end (bytes); the caller
	// fills them.
	CPUA float64 `json:"cpu_a_seconds,omitempty"`
	CPUB float64 `json:"cpu_b_seconds,omitempty"`
	RSSA uint64  `json:"rss_a,omitempty"`
	RSSB uint64  `json:"rss_b,omitempty"`
	// ForeignVCPU is the CPU processes outside the harness used during the window, in vCPU
	// (the caller fills it); Attempts how many times the window was measured to find a quiet
	// one.
	ForeignVCPU float64 `json:"foreign_vcpu"`
	Attempts    int     `json:"attempts,omitempty"`
}

// exchange sends one payload and checks the answer; bad reports a wrong answer (not an error).
type exchange func(ctx context.Context, payload []byte) (bad bool, err error)

// client is a connection (or a pool of them) for one kind, with one exchange per worker.
type client struct {
	per   func(worker int) (exchange, error)
	close func()
}

// newClient connects to addr in plaintext (h2c, gRPC without TLS), or over TLS with tlsCfg
// when it is not nil.
func newClient(ctx context.Context, kind, addr string, tlsCfg *tls.Config) (*client, error) {
	switch kind {
	case HTTP2:
		var protos http.Protocols
		scheme := "http"
		tr := &http.Transport{Protocols: &protos}
		if tlsCfg != nil {
			scheme = "https"
			tlsCfg = tlsCfg.Clone()
			tlsCfg.NextProtos = []string{"h2"}
			tr.TLSClientConfig = tlsCfg
			protos.SetHTTP2(true)
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		ex := func(ctx context.Context, payload []byte) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/", bytes.NewReader(payload))
			if err != nil {
				return false, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return false, err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return false, err
			}
			if resp.ProtoMajor != 2 {
				return false, fmt.Errorf("answer over %s, want HTTP/2", resp.Proto)
			}
			if resp.StatusCode != http.StatusOK {
				return false, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
			}
			return !bytes.Equal(body, payload), nil
		}
		return &client{per: func(int) (exchange, error) { return ex, nil }, close: tr.CloseIdleConnections}, nil
	case GRPCUnary, GRPCStream:
		creds := insecure.NewCredentials()
		if tlsCfg != nil {
			tlsCfg = tlsCfg.Clone()
			tlsCfg.NextProtos = []string{"h2"}
			creds = credentials.NewTLS(tlsCfg)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("gRPC client: %w", err)
		}
		if kind == GRPCUnary {
			ex := func(ctx context.Context, payload []byte) (bool, error) {
				out := new(wrapperspb.BytesValue)
				if err := conn.Invoke(ctx, unaryMethod, wrapperspb.Bytes(payload), out); err != nil {
					return false, err
				}
				return !bytes.Equal(out.GetValue(), payload), nil
			}
			return &client{per: func(int) (exchange, error) { return ex, nil }, close: func() { conn.Close() }}, nil
		}
		return &client{per: func(int) (exchange, error) {
			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, streamMethod)
			if err != nil {
				return nil, err
			}
			var mu sync.Mutex // guards stream: one message in flight per worker
			return func(_ context.Context, payload []byte) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				if err := stream.SendMsg(wrapperspb.Bytes(payload)); err != nil {
					return false, err
				}
				out := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(out); err != nil {
					return false, err
				}
				return !bytes.Equal(out.GetValue(), payload), nil
			}, nil
		}, close: func() { conn.Close() }}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", kind)
}

// Probe sends one exchange of kind to addr until it succeeds, for up to 20 s: a proxy that is
// ready may still be learning its destination.
func Probe(ctx context.Context, kind, addr string) error {
	payload := bytes.Repeat([]byte("p"), PayloadSize)
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			if kind == TCPBulk {
				_, err := Bulk(ctx, addr, 1<<16)
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return exchangeOnce(ctx, kind, addr, nil, payload)
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s through %s: no good exchange in 20s: %w", kind, addr, last)
}

// exchangeOnce sends one payload of kind to addr (over TLS with tlsCfg when it is not nil) and
// checks the answer.
func exchangeOnce(ctx context.Context, kind, addr string, tlsCfg *tls.Config, payload []byte) error {
	c, err := newClient(ctx, kind, addr, tlsCfg)
	if err != nil {
		return err
	}
	defer c.close()
	ex, err := c.per(0)
	if err != nil {
		return err
	}
	bad, err := ex(ctx, payload)
	if err == nil && bad {
		err = errors.New("the answer differs from the request")
	}
	return err
}

// VerifyMutualTLS checks that the server-side proxy of a pair at bAddr answers kind over TLS to
// a client with the run's client certificate, and refuses both TLS without a client
// certificate and plaintext: it guards the comparison against a pair that silently runs
// without mutual TLS.
func VerifyMutualTLS(ctx context.Context, kind, bAddr string, files pki.Files) error {
	withCert, err := files.ClientTLS()
	if err != nil {
		return err
	}
	noCert := withCert.Clone()
	noCert.Certificates = nil
	payload := bytes.Repeat([]byte("m"), PayloadSize)
	try := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if kind == TCPBulk {
			_, err := bulk(ctx, bAddr, cfg, 1<<16)
			return err
		}
		return exchangeOnce(ctx, kind, bAddr, cfg, payload)
	}
	if err := try(withCert); err != nil {
		return fmt.Errorf("server-side proxy %s does not answer %s over TLS with a client certificate: %w", bAddr, kind, err)
	}
	if try(noCert) == nil {
		return fmt.Errorf("server-side proxy %s answers %s over TLS without a client certificate: not mutual TLS", bAddr, kind)
	}
	if try(nil) == nil {
		return fmt.Errorf("server-side proxy %s answers %s in plaintext: not TLS", bAddr, kind)
	}
	return nil
}

// Paced sends kind to addr at rate requests per second for d, over conns workers each on its
// own evenly spaced schedule, and measures latency from each request's intended send time (a
// worker that is idle sleeps until its slot and measures from its wake-up).
func Paced(ctx context.Context, kind, addr string, rate float64, conns int, d time.Duration) (*Window, error) {
	c, err := newClient(ctx, kind, addr, nil)
	if err != nil {
		return nil, err
	}
	defer c.close()
	w := &Window{Protocol: kind, Rate: rate, Conns: conns}
	interval := time.Duration(float64(time.Second) * float64(conns) / rate)
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(d)
	var mu sync.Mutex // guards w and lats
	var lats []float64
	var wg sync.WaitGroup
	var setupErr error
	for i := range conns {
		ex, err := c.per(i)
		if err != nil {
			setupErr = err
			break
		}
		wg.Go(func() {
			payload := bytes.Repeat([]byte{byte('a' + i%26)}, PayloadSize)
			var mine []float64
			var n, errs, bad int64
			var first string
			for k := 0; ; k++ {
				slot := start.Add(time.Duration(i)*interval/time.Duration(conns) + time.Duration(k)*interval)
				if !slot.Before(end) || ctx.Err() != nil {
					break
				}
				from := slot
				if wait := time.Until(slot); wait > 0 {
					time.Sleep(wait)
					from = time.Now()
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				b, err := ex(rctx, payload)
				cancel()
				n++
				switch {
				case err != nil:
					errs++
					if first == "" {
						first = err.Error()
					}
				case b:
					bad++
				default:
					mine = append(mine, float64(time.Since(from).Microseconds())/1000)
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			w.Requests += n
			w.Errors += errs
			w.BadBodies += bad
			if w.FirstError == "" {
				w.FirstError = first
			}
			ok := int64(len(mine)) + bad
			w.BytesSent += n * PayloadSize
			w.BytesReceived += ok * PayloadSize
			mu.Unlock()
		})
	}
	wg.Wait()
	if setupErr != nil {
		return nil, fmt.Errorf("%s streams: %w", kind, setupErr)
	}
	w.Seconds = time.Since(start).Seconds()
	w.Achieved = float64(w.Requests) / d.Seconds()
	slices.Sort(lats)
	w.P50, w.P90, w.P99, w.P999 = pct(lats, 0.5), pct(lats, 0.9), pct(lats, 0.99), pct(lats, 0.999)
	return w, nil
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Bulk sends total bytes through one TCP connection to the echo at addr while reading them back,
// checks every byte, and reports the payload rate.
func Bulk(ctx context.Context, addr string, total int64) (*Window, error) {
	return bulk(ctx, addr, nil, total)
}

// bulk is Bulk, over TLS with tlsCfg when it is not nil.
func bulk(ctx context.Context, addr string, tlsCfg *tls.Config, total int64) (*Window, error) {
	var conn net.Conn
	var err error
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = nil
		conn, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	w := &Window{Protocol: TCPBulk, Conns: 1}
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		var sent int64
		for sent < total {
			n := min(int64(len(chunk)), total-sent)
			m, err := conn.Write(chunk[:n])
			sent += int64(m)
			if err != nil {
				w.BytesSent = sent
				werr <- err
				return
			}
		}
		w.BytesSent = sent
		werr <- nil
	}()
	buf := make([]byte, 64<<10)
	var got int64
	var rerr error
	for got < total {
		n, err := conn.Read(buf)
		for b := buf[:n]; len(b) > 0; {
			off := int(got % int64(len(chunk)))
			k := min(len(b), len(chunk)-off)
			if !bytes.Equal(b[:k], chunk[off:off+k]) {
				w.BadBodies = 1
			}
			b, got = b[k:], got+int64(k)
		}
		if err != nil {
			rerr = err
			break
		}
	}
	w.Seconds = time.Since(start).Seconds()
	w.BytesReceived = got
	if err := <-werr; err != nil && rerr == nil {
		rerr = err
	}
	if rerr != nil {
		return w, fmt.Errorf("bulk transfer after %d of %d bytes back: %w", got, total, rerr)
	}
	w.Requests = 1
	w.MBps = float64(total) / 1e6 / w.Seconds
	return w, nil
}
