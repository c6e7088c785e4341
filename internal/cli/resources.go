package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/config"
)

func (e *env) applyCmd() *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Apply routes, splits and policies to the running local mesh",
		Long: `Apply the documents of FILE (YAML, several separated by ---) to the running
local mesh. The whole file is refused if any document is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("give the file to apply with -f FILE (or -f - for stdin)")
			}
			data, err := readInput(file)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			applied, err := c.Apply(cmd.Context(), data, dryRun)
			var apiErr *ctlapi.APIError
			if errors.As(err, &apiErr) && len(apiErr.Errors) > 0 {
				fmt.Fprintf(e.stderr, "Error: %s was refused, nothing was applied:\n", file)
				for _, msg := range apiErr.Errors {
					fmt.Fprintf(e.stderr, "  - %s\n", msg)
				}
				return &exitError{code: 1}
			}
			if err != nil {
				return err
			}
			groups := groupsOf(data)
			suffix := ""
			if dryRun {
				suffix = " (dry run)"
			}
			for _, a := range applied {
				fmt.Fprintf(e.stdout, "%s/%s/%s %s%s\n", qualifiedKind(a.Kind, groups[a.Kind]), a.Namespace, a.Name, a.Action, suffix)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file to apply; - reads stdin")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show what would change, change nothing")
	return cmd
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?\r?$`)

// groupsOf maps each kind in a YAML file to its API group, for messages
// such as "trafficsplit.split.smi-spec.io/default/canary created".
func groupsOf(data []byte) map[string]string {
	groups := map[string]string{}
	for _, doc := range docSeparator.Split(string(data), -1) {
		var h struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if yaml.Unmarshal([]byte(doc), &h) != nil || h.Kind == "" {
			continue
		}
		groups[h.Kind] = groupOf(h.APIVersion)
	}
	return groups
}

func groupOf(apiVersion string) string {
	g, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return ""
	}
	return g
}

// qualifiedKind is "trafficsplit.split.smi-spec.io", or the lower-case kind
// when the group is unknown.
func qualifiedKind(kind, group string) string {
	k := strings.ToLower(kind)
	if group == "" {
		return k
	}
	return k + "." + group
}

// kindMatches reports whether what the user typed names kind of group:
// "TrafficSplit", "trafficsplit", "trafficsplits", "ts" is not accepted,
// "trafficsplit.split.smi-spec.io" is.
func kindMatches(arg, kind, group string) bool {
	a := strings.ToLower(arg)
	k := strings.ToLower(kind)
	return a == k || a == k+"s" || a == qualifiedKind(kind, group) || a == k+"s."+group
}

func (e *env) getCmd() *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "get [KIND]",
		Short: "List the resources applied to the running local mesh",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			rs, err := c.Resources(cmd.Context())
			if err != nil {
				return err
			}
			var kind string
			if len(args) == 1 {
				kind = args[0]
			}
			return writeResources(e.stdout, rs, kind, ns)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "only resources of this namespace (default: all)")
	return cmd
}

// writeResources prints the resources of kind (all when "") in namespace
// ns (all when "") as a table.
func writeResources(w io.Writer, rs []ctlapi.Resource, kind, ns string) error {
	var rows []ctlapi.Resource
	for _, r := range rs {
		if (kind == "" || kindMatches(kind, r.Kind, groupOf(r.APIVersion))) && (ns == "" || r.Namespace == ns) {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		what := "resources"
		if kind != "" {
			what = kind + " resources"
		}
		if ns != "" {
			what += " in namespace " + ns
		}
		fmt.Fprintf(w, "No %s applied.\n", what)
		return nil
	}
	slices.SortFunc(rows, func(a, b ctlapi.Resource) int {
		return strings.Compare(a.Kind+"/"+a.Namespace+"/"+a.Name, b.Kind+"/"+b.Namespace+"/"+b.Name)
	})
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tAPIVERSION")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Namespace, r.Kind, r.Name, r.APIVersion)
	}
	return tw.Flush()
}

func (e *env) deleteCmd() *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a resource applied to the running local mesh",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kindArg, name := args[0], args[1]
			c, err := e.client()
			if err != nil {
				return err
			}
			rs, err := c.Resources(cmd.Context())
			if err != nil {
				return err
			}
			i := slices.IndexFunc(rs, func(r ctlapi.Resource) bool {
				return kindMatches(kindArg, r.Kind, groupOf(r.APIVersion)) && r.Namespace == ns && r.Name == name
			})
			if i < 0 {
				return fmt.Errorf("no %s named %s is applied in namespace %s; list what is applied with weft get", kindArg, name, ns)
			}
			r := rs[i]
			if err := c.Delete(cmd.Context(), r.Kind, r.Namespace, r.Name); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s/%s/%s deleted\n", qualifiedKind(r.Kind, groupOf(r.APIVersion)), r.Namespace, r.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", config.DefaultNamespace, "namespace of the resource")
	return cmd
}
