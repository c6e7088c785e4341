package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate returns the JSON patch (RFC 6902) that injects pod, or nil when
// the pod is left alone (see Apply for when).
func Mutate(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) ([]byte, error) {
	out, _, err := Apply(pod, ns, cfg)
	if err != nil || out == nil {
		return nil, err
	}
	// "add" on an existing member replaces it: each list is written
	// whole, so the patch holds no index that could shift under another
	// webhook's edit.
	ops := []patchOp{
		{Op: "add", Path: "/metadata/annotations", Value: out.Annotations},
		{Op: "add", Path: "/spec/initContainers", Value: out.Spec.InitContainers},
		{Op: "add", Path: "/spec/volumes", Value: out.Spec.Volumes},
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("inject: encode patch: %w", err)
	}
	return b, nil
}

// NamespaceGetter returns a namespace by name (the webhook reads its
// weft.dev/inject mark).
type NamespaceGetter func(ctx context.Context, name string) (*corev1.Namespace, error)

// Handler serves AdmissionReview v1 requests for pods.
type Handler struct {
	// Config of the injection; ProxyImage is required.
	Config Config
	// Namespaces looks up the pod's namespace; nil judges the pod by its
	// own marks and the namespace's name only.
	Namespaces NamespaceGetter
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// maxReview bounds the request body: a pod is far smaller.
const maxReview = 4 << 20

// ServeHTTP answers one AdmissionReview. A pod the injector cannot read is
// allowed unchanged (the webhook must not block pods it does not
// understand); a pod with an invalid Weft annotation is refused with a
// message naming it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
	if err != nil || len(body) > maxReview {
		http.Error(w, "request body unreadable or larger than 4 MiB", http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "body is not an AdmissionReview v1 with a request", http.StatusBadRequest)
		return
	}
	resp := h.review(r.Context(), log, review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		log.Debug("write admission response", "err", err)
	}
}

func (h *Handler) review(ctx context.Context, log *slog.Logger, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		log.Warn("pod not decodable; admitted without the proxy", "namespace", req.Namespace, "err", err)
		return allow
	}
	if pod.Namespace == "" {
		// Pods made by controllers arrive without a namespace.
		pod.Namespace = req.Namespace
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace}}
	if h.Namespaces != nil {
		got, err := h.Namespaces(ctx, pod.Namespace)
		if err != nil {
			log.Warn("namespace lookup; judging the pod by its own marks", "namespace", pod.Namespace, "err", err)
		} else if got != nil {
			ns = got
		}
	}
	patch, err := Mutate(&pod, ns, h.Config)
	switch {
	case errors.Is(err, ErrInvalidAnnotation):
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Message: fmt.Sprintf("weft: %v", err),
		}}
	case err != nil:
		log.Error("inject", "namespace", pod.Namespace, "pod", podName(&pod), "err", err)
		return allow
	case patch == nil:
		return allow
	}
	log.Info("injected the proxy", "namespace", pod.Namespace, "pod", podName(&pod))
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}
