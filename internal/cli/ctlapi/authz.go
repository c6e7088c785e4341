package ctlapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// AuthzCheck is the question of POST /api/v1/authz/check.
type AuthzCheck struct {
	From    string              `json:"from"`
	To      string              `json:"to"`
	Port    uint32              `json:"port,omitempty"`
	Method  string              `json:"method,omitempty"`
	Path    string              `json:"path,omitempty"`
	Host    string              `json:"host,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
}

// AuthzDecision is the controller's answer.
type AuthzDecision struct {
	Allowed       bool   `json:"allowed"`
	Audit         bool   `json:"audit,omitempty"`
	DecidedBy     string `json:"decided_by"`
	Rule          int    `json:"rule"`
	Why           string `json:"why"`
	Reason        string `json:"reason,omitempty"`
	Identity      string `json:"identity"`
	Service       string `json:"service"`
	Port          uint32 `json:"port"`
	Server        string `json:"server,omitempty"`
	DefaultPolicy string `json:"default_policy"`
	DefaultSource string `json:"default_source,omitempty"`
	TLSMode       string `json:"tls_mode"`
	Path          string `json:"path,omitempty"`
}

// CheckAuthz asks whether the live policy allows q.
func (c *Client) CheckAuthz(ctx context.Context, q AuthzCheck) (*AuthzDecision, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, fmt.Errorf("encode check: %w", err)
	}
	var d AuthzDecision
	if err := c.do(ctx, "POST", "/api/v1/authz/check", bytes.NewReader(body), "application/json", &d); err != nil {
		return nil, err
	}
	return &d, nil
}
