package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
)

// UserFlowKind selects the user flow collection.
type UserFlowKind string

const (
	// UserFlowB2X is a self-service sign-up user flow (/identity/b2xUserFlows, v1.0).
	UserFlowB2X UserFlowKind = "b2x"
	// UserFlowB2C is an Azure AD B2C user flow (/identity/b2cUserFlows, beta).
	UserFlowB2C UserFlowKind = "b2c"
)

// stepName matches the Graph property names of apiConnectorConfiguration
// (postFederationSignup, postAttributeCollection, preTokenIssuance).
var stepName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*$`)

func (c *Client) userFlowStep(kind UserFlowKind, flowID, step string) (string, apiVersion, error) {
	root, v, ok := userFlowRoot(kind)
	if !ok {
		return "", "", fmt.Errorf("graph: unknown user flow kind %q (want b2x or b2c)", kind)
	}
	if flowID == "" {
		return "", "", fmt.Errorf("graph: empty %s user flow ID", kind)
	}
	if !stepName.MatchString(step) {
		return "", "", fmt.Errorf("graph: invalid user flow step %q", step)
	}
	return root + "/" + seg(flowID) + "/apiConnectorConfiguration", v, nil
}

// UserFlowAPIConnector returns the ID of the API connector attached to step
// of a user flow, or "" when none is.
func (c *Client) UserFlowAPIConnector(ctx context.Context, kind UserFlowKind, flowID, step string) (string, error) {
	path, v, err := c.userFlowStep(kind, flowID, step)
	if err != nil {
		return "", err
	}
	var out map[string]json.RawMessage
	if err := c.do(ctx, http.MethodGet, v, path, "$expand="+step, nil, &out); err != nil {
		return "", err
	}
	raw, ok := out[step]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var conn struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &conn); err != nil {
		return "", fmt.Errorf("graph: GET %s: decode %s: %w", path, step, err)
	}
	return conn.ID, nil
}

// SetUserFlowAPIConnector attaches an API connector to step of a user flow.
func (c *Client) SetUserFlowAPIConnector(ctx context.Context, kind UserFlowKind, flowID, step, connectorID string) error {
	path, v, err := c.userFlowStep(kind, flowID, step)
	if err != nil {
		return err
	}
	if connectorID == "" {
		return fmt.Errorf("graph: attach API connector to %s user flow %s: empty connector ID", kind, flowID)
	}
	ref := map[string]string{"@odata.id": c.graph + "/" + string(v) + apiConnectorsPath + "/" + seg(connectorID)}
	return c.do(ctx, http.MethodPut, v, path+"/"+step+"/$ref", "", ref, nil)
}

// ClearUserFlowAPIConnector detaches the API connector from step of a user
// flow. Graph documents an empty object ({}) as the body that disables it.
func (c *Client) ClearUserFlowAPIConnector(ctx context.Context, kind UserFlowKind, flowID, step string) error {
	path, v, err := c.userFlowStep(kind, flowID, step)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, v, path+"/"+step+"/$ref", "", struct{}{}, nil)
}
