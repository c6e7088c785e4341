package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// FuzzParseAnnotations checks that any annotation value is parsed or
// refused without a panic, and that accepted ports round-trip.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range []string{"80,443", "8000-8010", " 1 , 2 ", "10.0.0.0/8,fd00::/8", "0", "65535-1", "-", ","} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		o, err := parseAnnotations(map[string]string{
			AnnotationSkipInboundPorts: v, AnnotationOpaquePorts: v, AnnotationSkipOutboundCIDRs: v,
		})
		if err != nil {
			return
		}
		again, err := parsePorts(joinPorts(o.skipInbound))
		if err != nil {
			t.Fatalf("joinPorts(%v) = %q does not parse: %v", o.skipInbound, joinPorts(o.skipInbound), err)
		}
		if len(again) != len(o.skipInbound) {
			t.Fatalf("round trip of %v gave %v", o.skipInbound, again)
		}
	})
}

// FuzzHandler feeds arbitrary bodies to the webhook: it answers 200 with
// an AdmissionReview or 400, never panics.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"shop","object":{"metadata":{"labels":{"weft.dev/inject":"enabled"}},"spec":{"containers":[{"name":"a"}]}}}}`))
	f.Add([]byte(`{"request":{"kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"weft.dev/inject":"enabled","weft.dev/skip-inbound-ports":"1-65535"}}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	h := &Handler{Config: testConfig}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusBadRequest:
		case http.StatusOK:
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("200 without an AdmissionReview response: %v %s", err, rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}
