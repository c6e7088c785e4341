package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
)

func (e *env) authzCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Inspect authorization policy",
	}
	cmd.AddCommand(e.authzCheckCmd())
	return cmd
}

func (e *env) authzCheckCmd() *cobra.Command {
	var q ctlapi.AuthzCheck
	var headers []string
	var output string
	cmd := &cobra.Command{
		Use:   "check --from CLIENT --to SERVICE [METHOD PATH]",
		Short: "Ask whether the live policy allows a client to reach a service, and by which rule",
		Long: `Evaluate the authorization policy the controller sends to SERVICE's proxies,
with the proxies' own evaluator, for a client: an HTTP request METHOD PATH,
or without them an opaque TCP connection. The path is normalised as the
proxy normalises it. Exits 1 when the request would be denied.

--from is a SPIFFE ID, sa/NAME (in SERVICE's namespace), ns/NS/sa/NAME, a
service name (the identity of its workloads) or "unauthenticated".`,
		Example: `  weft authz check --from web --to api GET /api/books
  weft authz check --from unauthenticated --to api GET /admin
  weft authz check --from ns/shop/sa/cart --to db`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return fmt.Errorf("give METHOD and PATH (e.g. GET /api/books), or neither to check a TCP connection")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: give text or json", output)
			}
			if q.From == "" || q.To == "" {
				return fmt.Errorf("--from and --to are required, e.g. --from web --to api")
			}
			if len(args) == 2 {
				q.Method, q.Path = strings.ToUpper(args[0]), args[1]
			}
			for _, h := range headers {
				name, value, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(name) == "" {
					return fmt.Errorf("--header %q: write NAME: VALUE", h)
				}
				if q.Headers == nil {
					q.Headers = map[string][]string{}
				}
				q.Headers[strings.TrimSpace(name)] = append(q.Headers[strings.TrimSpace(name)], strings.TrimSpace(value))
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			d, err := c.CheckAuthz(cmd.Context(), q)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(d); err != nil {
					return err
				}
			} else {
				writeDecision(e.stdout, &q, d)
			}
			if !d.Allowed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&q.From, "from", "", "the client: SPIFFE ID, sa/NAME, ns/NS/sa/NAME, service name, or unauthenticated")
	cmd.Flags().StringVar(&q.To, "to", "", "the service called, e.g. api or api.shop")
	cmd.Flags().Uint32Var(&q.Port, "port", 0, "the workload's port (default: its first)")
	cmd.Flags().StringVar(&q.Host, "host", "", "the request's Host")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "a request header NAME: VALUE (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func writeDecision(w io.Writer, q *ctlapi.AuthzCheck, d *ctlapi.AuthzDecision) {
	what := "a TCP connection"
	if q.Method != "" {
		what = q.Method + " " + d.Path
		if d.Path == "" {
			what = q.Method + " " + q.Path
		}
	}
	from := d.Identity
	if from == "" {
		from = "an unauthenticated client"
	}
	verdict := "DENIED"
	switch {
	case d.Audit:
		verdict = "ALLOWED (audit: deny would refuse it)"
	case d.Allowed:
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "%s: %s from %s to %s port %d\n", verdict, what, from, d.Service, d.Port)
	switch {
	case d.Rule >= 0:
		fmt.Fprintf(w, "  by rule %d of AuthorizationPolicy %s\n", d.Rule, d.DecidedBy)
	default:
		fmt.Fprintf(w, "  by %s\n", d.DecidedBy)
	}
	fmt.Fprintf(w, "  why: %s\n", d.Why)
	if d.Server != "" {
		fmt.Fprintf(w, "  server: %s (access policy %s)\n", d.Server, d.DefaultPolicy)
	} else {
		src := d.DefaultSource
		if src == "" {
			src = "mesh"
		}
		fmt.Fprintf(w, "  default: %s (from %s)\n", d.DefaultPolicy, src)
	}
	fmt.Fprintf(w, "  tls: %s\n", d.TLSMode)
	if !d.Allowed {
		fmt.Fprintf(w, "  the client would read: Weft-Proxy-Error: %s\n", d.Reason)
	}
}
