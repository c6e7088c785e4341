package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
)

func (e *env) identityCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "List the workloads of the mesh with their SPIFFE IDs and their proxies' certificates",
		Long: `List every workload of the local mesh with its identity (the SPIFFE ID in its
proxies' certificates: spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT),
when each proxy's current certificate expires, and the trust anchors and the
issuer that sign them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: give table or json", output)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			id, err := c.Identity(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(id)
			}
			return writeIdentity(e.stdout, id, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// writeIdentity prints the workloads, one row per proxy, then the CA.
func writeIdentity(w io.Writer, id *ctlapi.Identity, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tIDENTITY\tPROXY\tCERTIFICATE EXPIRES")
	for _, wl := range id.Workloads {
		name := wl.Service + "." + wl.Namespace
		if len(wl.Proxies) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\n", name, wl.Identity)
		}
		for _, p := range wl.Proxies {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, wl.Identity, p.ID, expiry(p.CertNotAfter, now))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ntrust domain: %s\n", id.TrustDomain)
	for _, a := range id.Anchors {
		fmt.Fprintf(w, "trust anchor: %s, expires %s\n", a.Subject, expiry(&a.NotAfter, now))
	}
	fmt.Fprintf(w, "issuer:       %s, expires %s\n", id.Issuer.Subject, expiry(&id.Issuer.NotAfter, now))
	return nil
}

// expiry says when t is, relative to now.
func expiry(t *time.Time, now time.Time) string {
	if t == nil {
		return "none issued yet"
	}
	left := t.Sub(now)
	at := t.UTC().Format(time.RFC3339)
	if left <= 0 {
		return at + " (expired)"
	}
	return at + " (in " + roundDuration(left) + ")"
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		return d.Round(time.Second).String()
	}
}
