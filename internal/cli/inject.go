package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/install"
)

// podTemplatePaths is where each workload kind keeps its pod template.
var podTemplatePaths = map[string][]string{
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

func (e *env) injectCmd() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "inject FILE|-",
		Short: "Add the proxy to the workloads of a Kubernetes manifest",
		Long: `Add the proxy to the Pods, Deployments, StatefulSets, DaemonSets,
ReplicaSets, Jobs and CronJobs of a multi-document YAML manifest, exactly as
the injector webhook would, and print the manifest:

  weft inject deploy.yaml | kubectl apply -f -
  kubectl get deploy -n shop -o yaml | weft inject - | kubectl apply -f -

Other documents pass through unchanged. Workloads marked
weft.dev/inject: disabled, already injected, in kube-system or using the
host's network are left alone; what was done is reported on stderr. Give the
same image flags as to weft install.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readInput(args[0])
			if err != nil {
				return err
			}
			o, err := f.options(nil)
			if err != nil {
				return err
			}
			cfg, err := install.InjectConfig(o)
			if err != nil {
				return err
			}
			cfg.Force = true
			out, err := injectManifest(data, cfg, func(msg string) { fmt.Fprintln(e.stderr, msg) })
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(e.stdout, out)
			return err
		},
	}
	f.register(cmd, false)
	return cmd
}

// injectManifest injects every workload of a YAML stream; report is told
// what happened to each.
func injectManifest(data []byte, cfg inject.Config, report func(string)) (string, error) {
	var b strings.Builder
	n := 0
	for i, part := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		n++
		if n > 1 {
			b.WriteString("---\n")
		}
		out, msg, err := injectDocument([]byte(part), cfg)
		if err != nil {
			return "", fmt.Errorf("document %d: %w", i+1, err)
		}
		if msg != "" {
			report(msg)
		}
		if out == nil {
			b.WriteString(strings.TrimLeft(part, "\n"))
			if !strings.HasSuffix(part, "\n") {
				b.WriteString("\n")
			}
			continue
		}
		b.Write(out)
	}
	if n == 0 {
		return "", fmt.Errorf("the input holds no YAML documents")
	}
	return b.String(), nil
}

func stripComments(s string) string {
	var keep []string
	for line := range strings.SplitSeq(s, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// injectDocument returns the injected document, or nil to print it as it
// was, and a line for the report.
func injectDocument(text []byte, cfg inject.Config) ([]byte, string, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(text, &obj); err != nil {
		return nil, "", fmt.Errorf("invalid YAML: %w", err)
	}
	kind, _ := obj["kind"].(string)
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	label := strings.ToLower(kind) + "/" + name
	if kind == "List" {
		return nil, "", fmt.Errorf("kind List is not supported: give the items as separate YAML documents")
	}
	var tmpl map[string]any
	var parent map[string]any
	path, isWorkload := podTemplatePaths[kind]
	switch {
	case kind == "Pod" && obj["apiVersion"] == "v1":
		tmpl = obj
	case isWorkload:
		cur := obj
		for _, p := range path[:len(path)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				return nil, "", fmt.Errorf("%s has no %s", label, strings.Join(path, "."))
			}
			cur = next
		}
		parent = cur
		tmpl, _ = cur[path[len(path)-1]].(map[string]any)
		if tmpl == nil {
			return nil, "", fmt.Errorf("%s has no %s", label, strings.Join(path, "."))
		}
	default:
		return nil, "", nil
	}
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return nil, "", err
	}
	var pt corev1.PodTemplateSpec
	if err := json.Unmarshal(raw, &pt); err != nil {
		return nil, "", fmt.Errorf("%s: pod template: %w", label, err)
	}
	pod := &corev1.Pod{ObjectMeta: pt.ObjectMeta, Spec: pt.Spec}
	if pod.Namespace == "" {
		pod.Namespace = ns
	}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	injected, reason, err := inject.Apply(pod, nil, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", label, err)
	}
	if injected == nil {
		return nil, label + " skipped: " + reason, nil
	}
	var newTmpl map[string]any
	if kind == "Pod" {
		injected.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		injected.Namespace = ns
		newTmpl, err = toMap(injected)
		if err != nil {
			return nil, "", err
		}
		// Keep what the typed Pod does not know as the user wrote it.
		newTmpl["status"] = obj["status"]
		if obj["status"] == nil {
			delete(newTmpl, "status")
		}
		obj = newTmpl
	} else {
		injected.Namespace = pt.Namespace
		newTmpl, err = toMap(corev1.PodTemplateSpec{ObjectMeta: injected.ObjectMeta, Spec: injected.Spec})
		if err != nil {
			return nil, "", err
		}
		parent[path[len(path)-1]] = newTmpl
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return nil, "", err
	}
	return out, label + " injected", nil
}

// toMap converts a typed object without the fields typed objects always
// marshal empty.
func toMap(v any) (map[string]any, error) {
	return install.ToObject(v)
}
