package auditreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client drives a receiver from a test: it sets faults, reads counters and lists events.
type Client struct {
	// URL is the receiver's base URL, for example http://127.0.0.1:8090.
	URL string
	// HTTP is the client to use; http.DefaultClient when nil.
	HTTP *http.Client
	// Token is sent as a bearer token when not empty.
	Token string
}

// SetFault sets the fault in force and returns the new state.
func (c *Client) SetFault(ctx context.Context, f Fault) (State, error) {
	body, err := json.Marshal(f)
	if err != nil {
		return State{}, fmt.Errorf("encoding fault: %w", err)
	}
	var st State
	return st, c.do(ctx, http.MethodPost, ControlPath, body, &st)
}

// State returns the fault in force and the counters.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	return st, c.do(ctx, http.MethodGet, ControlPath, nil, &st)
}

// Events returns the stored events, oldest first; only executionName's when it is not empty.
func (c *Client) Events(ctx context.Context, executionName string) ([]json.RawMessage, error) {
	path := Path
	if executionName != "" {
		path += "?executionName=" + url.QueryEscape(executionName)
	}
	var events []json.RawMessage
	return events, c.do(ctx, http.MethodGet, path, nil, &events)
}

// do sends a request to path and decodes a 200 answer into out.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, r)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: answered %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}
