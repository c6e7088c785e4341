package controller

import (
	"strings"
	"testing"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
)

func TestDefaultInboundPolicy(t *testing.T) {
	_, err := New(Config{Token: "t", Store: memory.New(""), DefaultInboundPolicy: "open"})
	if err == nil || !strings.Contains(err.Error(), `--default-inbound-policy: unknown default inbound policy "open" (want all-unauthenticated, all-authenticated, deny or audit)`) {
		t.Fatalf("got %v, want the flag and the choices named", err)
	}
	store := memory.New("")
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: []config.InboundPort{{Port: 80}}})
	c, err := New(Config{Token: "t", Store: store, DefaultInboundPolicy: "deny"})
	if err != nil {
		t.Fatal(err)
	}
	in := c.Push().InboundFor(store.Snapshot(), config.Key("api", "default"))
	if got := in.GetPorts()[0].GetPolicy().GetDefaultPolicy(); got != meshv1.InboundPolicy_DENY {
		t.Errorf("default %v, want DENY", got)
	}
}
