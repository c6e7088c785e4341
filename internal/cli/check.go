package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/local/statedir"
)

// Marks printed by `weft check`, as linkerd prints them.
const (
	okMark   = "√"
	failMark = "×"
	// warnMark flags a problem that does not fail the check yet (a CA
	// certificate expiring within 30 days).
	warnMark = "‼"
)

func (e *env) checkCmd() *cobra.Command {
	var f kubeFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the local mesh, or Weft on a Kubernetes cluster (--pre before installing)",
		Long: `Check that Weft is healthy. Exits with status 1 if any check fails (×);
warnings (‼) do not fail it.

Local mesh (weft up): the controller answers and accepts the token, every
proxy is ready and runs the configuration the controller sent last, and
every service has ready endpoints.

Kubernetes (--kubernetes): the API server answers and is recent enough, the
control plane's namespace, CRDs, Deployment, API, injector webhook and its
certificate, trust anchors and issuer; with --proxy every injected pod's
proxy too (-n limits it to one namespace).

Before installing (--pre): the cluster can take Weft: the API server's
version, the user's right to create what weft install creates, no earlier
install or conflicting webhook or CRDs, the admission webhook API, and Pod
Security admission letting injected pods use NET_ADMIN and NET_RAW.

Without --pre, --kubernetes or --local, weft check checks the local mesh
when one runs (its state directory names a controller), else the cluster
of the kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config) when there
is one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.target = e.kube
			kube, err := e.wantsKube(&f)
			if err != nil {
				return err
			}
			if kube {
				kc := &kubeChecker{f: f, retryDelay: e.checkRetryDelay, clock: e.clock}
				ok := false
				if f.pre {
					ok = kc.runPre(cmd.Context(), e.stdout)
				} else {
					ok = kc.runInstalled(cmd.Context(), e.stdout)
				}
				if !ok {
					return &exitError{code: 1}
				}
				return nil
			}
			dir, err := e.resolvedStateDir()
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			retries := e.checkRetries
			if cmd.Flags().Changed("wait") && e.checkRetryDelay > 0 {
				retries = max(1, int(f.wait/e.checkRetryDelay))
			}
			ch := &checker{
				api: c, http: e.proxyHTTP, logDir: statedir.Logs(dir),
				retries: retries, retryDelay: e.checkRetryDelay, clock: e.clock,
			}
			if !ch.run(cmd.Context(), e.stdout) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	registerKubeFlags(cmd, &f)
	return cmd
}

// checker runs the checks of `weft check`.
type checker struct {
	api  *ctlapi.Client
	http *http.Client
	// logDir is where the proxies' log files are, for hints.
	logDir string
	// retries is how often a failing proxy check runs again, retryDelay
	// apart, before it counts as failed: a push may be in flight.
	retries    int
	retryDelay time.Duration
	// clock returns the time certificates are checked at; nil means
	// time.Now.
	clock func() time.Time
}

type printer struct {
	w       io.Writer
	section string
	failed  bool
}

func (p *printer) heading(title string) {
	if p.section != "" {
		fmt.Fprintln(p.w)
	}
	p.section = title
	fmt.Fprintln(p.w, title)
	fmt.Fprintln(p.w, strings.Repeat("-", len(title)))
}

func (p *printer) result(title string, problems []string) bool {
	if len(problems) == 0 {
		fmt.Fprintf(p.w, "%s %s\n", okMark, title)
		return true
	}
	p.failed = true
	fmt.Fprintf(p.w, "%s %s\n", failMark, title)
	for _, pr := range problems {
		fmt.Fprintf(p.w, "    %s\n", pr)
	}
	return false
}

// warnOrFail prints problems as a warning, or as a failure when fail is
// set; no problems is a pass.
func (p *printer) warnOrFail(title string, problems []string, fail bool) {
	if len(problems) == 0 || fail {
		p.result(title, problems)
		return
	}
	fmt.Fprintf(p.w, "%s %s\n", warnMark, title)
	for _, pr := range problems {
		fmt.Fprintf(p.w, "    %s\n", pr)
	}
}

func (p *printer) summary() {
	mark := okMark
	if p.failed {
		mark = failMark
	}
	fmt.Fprintf(p.w, "\nStatus check results are %s\n", mark)
}

// run prints every check and reports whether all passed.
func (c *checker) run(ctx context.Context, w io.Writer) bool {
	p := &printer{w: w}
	defer p.summary()

	p.heading("weft-controller")
	_, err := c.api.Status(ctx)
	var unreachable *ctlapi.Unreachable
	switch {
	case errors.As(err, &unreachable):
		p.result("controller is reachable", []string{err.Error()})
		return false
	case ctlapi.IsUnauthorized(err):
		p.result("controller is reachable", nil)
		p.result("controller API is authenticated (token accepted)", []string{err.Error()})
		return false
	case err != nil:
		p.result("controller is reachable", []string{err.Error()})
		return false
	}
	p.result("controller is reachable", nil)
	p.result("controller API is authenticated (token accepted)", nil)

	p.heading("weft-proxies")
	p.result("every proxy is ready", c.retry(ctx, c.proxiesReady))
	p.result("every proxy runs the latest configuration", c.retry(ctx, c.proxiesCurrent))
	p.result("every service has ready endpoints", c.retry(ctx, c.servicesReady))

	id, err := c.api.Identity(ctx)
	var apiErr *ctlapi.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusServiceUnavailable || apiErr.Status == http.StatusNotFound) {
		return !p.failed // no certificate authority to check
	}
	p.heading("weft-identity")
	if err != nil {
		p.result("controller reports its certificate authority", []string{err.Error()})
		return false
	}
	p.warnOrFail("trust anchors are valid for at least 30 more days", c.expiring("anchor", id.Anchors), c.expired(id.Anchors))
	issuer := []ctlapi.CertInfo{id.Issuer}
	p.warnOrFail("issuer certificate is valid for at least 30 more days", c.expiring("issuer", issuer), c.expired(issuer))
	p.result("every proxy holds a valid workload certificate", c.retry(ctx, func(ctx context.Context, st *ctlapi.Status) []string {
		id, err := c.api.Identity(ctx)
		if err != nil {
			return []string{err.Error()}
		}
		return c.proxyCerts(st, id)
	}))
	return !p.failed
}

// expiryWarning is how long before expiry `weft check` fails on a CA
// certificate.
const expiryWarning = 30 * 24 * time.Hour

func (c *checker) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// expiring lists the certificates that expired or expire within
// expiryWarning.
func (c *checker) expiring(role string, certs []ctlapi.CertInfo) []string {
	now := c.now()
	var problems []string
	for _, ci := range certs {
		left := ci.NotAfter.Sub(now)
		switch {
		case left <= 0:
			problems = append(problems, fmt.Sprintf("%s %q expired on %s", role, ci.Subject, ci.NotAfter.UTC().Format(time.DateOnly)))
		case left < expiryWarning:
			problems = append(problems, fmt.Sprintf("%s %q expires on %s, in %d days", role, ci.Subject, ci.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24)))
		}
	}
	if len(problems) > 0 {
		problems = append(problems, "new roots: stop weft up, remove "+filepath.Join(filepath.Dir(c.logDir), "identity")+" (or give new --identity-* files), start it again")
	}
	return problems
}

// expired reports whether one of certs has expired: a failure, where
// expiring soon is a warning.
func (c *checker) expired(certs []ctlapi.CertInfo) bool {
	now := c.now()
	for _, ci := range certs {
		if !ci.NotAfter.After(now) {
			return true
		}
	}
	return false
}

// proxyCerts lists the proxies without a current workload certificate.
func (c *checker) proxyCerts(st *ctlapi.Status, id *ctlapi.Identity) []string {
	leaves := map[string]ctlapi.ProxyLeaf{}
	for _, w := range id.Workloads {
		for _, l := range w.Proxies {
			leaves[l.ID] = l
		}
	}
	now := c.now()
	var problems []string
	for _, p := range st.Proxies {
		l, ok := leaves[p.ID]
		switch {
		case !ok || l.CertNotAfter == nil:
			problems = append(problems, fmt.Sprintf("%s: no certificate issued since the controller started; %s", p.ID, c.logHint(p.ID)))
		case !l.CertNotAfter.After(now):
			problems = append(problems, fmt.Sprintf("%s: certificate expired at %s and was not renewed; %s", p.ID, l.CertNotAfter.UTC().Format(time.RFC3339), c.logHint(p.ID)))
		}
	}
	slices.Sort(problems)
	return problems
}

// retry runs check until it finds no problem or the retries are used up.
func (c *checker) retry(ctx context.Context, check func(context.Context, *ctlapi.Status) []string) []string {
	var problems []string
	for attempt := 0; ; attempt++ {
		st, err := c.api.Status(ctx)
		if err != nil {
			problems = []string{err.Error()}
		} else {
			problems = check(ctx, st)
		}
		if len(problems) == 0 || attempt+1 >= c.retries {
			return problems
		}
		select {
		case <-ctx.Done():
			return problems
		case <-time.After(c.retryDelay):
		}
	}
}

// proxyStatus is what a proxy's admin /status returns.
type proxyStatus struct {
	ID             string `json:"id"`
	Ready          bool   `json:"ready"`
	InboundVersion uint64 `json:"inbound_version"`
	Destinations   map[string]struct {
		Version   uint64 `json:"version"`
		Endpoints int    `json:"endpoints"`
	} `json:"destinations"`
}

// forEachProxy calls fn for every proxy concurrently and returns the
// problems it reported, sorted by proxy ID.
func forEachProxy(st *ctlapi.Status, fn func(p ctlapi.ProxyStatus) string) []string {
	problems := make([]string, len(st.Proxies))
	var wg sync.WaitGroup
	for i, p := range st.Proxies {
		wg.Go(func() { problems[i] = fn(p) })
	}
	wg.Wait()
	slices.Sort(problems)
	return slices.DeleteFunc(problems, func(s string) bool { return s == "" })
}

func (c *checker) logHint(id string) string {
	return "log: " + filepath.Join(c.logDir, id+".proxy.log")
}

func (c *checker) proxiesReady(ctx context.Context, st *ctlapi.Status) []string {
	return forEachProxy(st, func(p ctlapi.ProxyStatus) string {
		if p.AdminAddr == "" {
			return fmt.Sprintf("%s: the controller knows no admin address for it", p.ID)
		}
		code, body, err := c.get(ctx, p.AdminAddr, "/ready")
		if err != nil {
			return fmt.Sprintf("%s: admin server %s not reachable (%v); %s", p.ID, p.AdminAddr, err, c.logHint(p.ID))
		}
		if code != http.StatusOK {
			reason := strings.TrimSpace(string(body))
			if len(reason) > 200 {
				reason = reason[:200]
			}
			return fmt.Sprintf("%s: not ready (HTTP %d: %s); %s", p.ID, code, reason, c.logHint(p.ID))
		}
		return ""
	})
}

func (c *checker) proxiesCurrent(ctx context.Context, st *ctlapi.Status) []string {
	return forEachProxy(st, func(p ctlapi.ProxyStatus) string {
		if !p.Connected {
			return fmt.Sprintf("%s: not connected to the controller; %s", p.ID, c.logHint(p.ID))
		}
		if p.AdminAddr == "" {
			return fmt.Sprintf("%s: the controller knows no admin address for it", p.ID)
		}
		code, body, err := c.get(ctx, p.AdminAddr, "/status")
		if err != nil || code != http.StatusOK {
			return fmt.Sprintf("%s: admin /status not available (HTTP %d, %v); %s", p.ID, code, err, c.logHint(p.ID))
		}
		var ps proxyStatus
		if err := json.Unmarshal(body, &ps); err != nil {
			return fmt.Sprintf("%s: admin /status is not JSON: %v", p.ID, err)
		}
		var stale []string
		if ps.InboundVersion != p.SentInboundVersion {
			stale = append(stale, fmt.Sprintf("inbound at version %d, controller sent %d", ps.InboundVersion, p.SentInboundVersion))
		}
		auths := make([]string, 0, len(p.Sent))
		for a := range p.Sent {
			auths = append(auths, a)
		}
		slices.Sort(auths)
		for _, a := range auths {
			d, ok := ps.Destinations[a]
			switch {
			case !ok:
				stale = append(stale, fmt.Sprintf("%s missing, controller sent version %d", a, p.Sent[a]))
			case d.Version != p.Sent[a]:
				stale = append(stale, fmt.Sprintf("%s at version %d, controller sent %d", a, d.Version, p.Sent[a]))
			}
		}
		if len(stale) > 0 {
			return fmt.Sprintf("%s: %s", p.ID, strings.Join(stale, "; "))
		}
		return ""
	})
}

func (c *checker) servicesReady(_ context.Context, st *ctlapi.Status) []string {
	var problems []string
	for _, s := range st.Services {
		if s.Ready == 0 {
			problems = append(problems, fmt.Sprintf("%s.%s: %d of %d endpoints ready", s.Name, s.Namespace, s.Ready, s.Endpoints))
		}
	}
	return problems
}

func (c *checker) get(ctx context.Context, addr, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the method and URL add nothing to the admin address
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}
