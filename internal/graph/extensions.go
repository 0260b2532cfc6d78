package graph

import (
	"context"
	"errors"
	"net/http"
)

// CustomExtension is a customAuthenticationExtension.
type CustomExtension struct {
	ID string
	// ODataType is the derived type, e.g.
	// "#microsoft.graph.onTokenIssuanceStartCustomExtension".
	ODataType                string
	DisplayName, Description string
	// TargetURL is endpointConfiguration (#microsoft.graph.httpRequestEndpoint).
	TargetURL string
	// ResourceID is authenticationConfiguration
	// (#microsoft.graph.azureAdTokenAuthentication), e.g. api://{host}/{appId}.
	ResourceID string
	// TimeoutMilliseconds and MaximumRetries are clientConfiguration; 0 leaves
	// Graph's default.
	TimeoutMilliseconds, MaximumRetries int32
	// ClaimsForToken are the claimIdInApiResponse values of
	// claimsForTokenConfiguration (onTokenIssuanceStartCustomExtension only).
	ClaimsForToken []string
}

// TypeOnTokenIssuanceStartCustomExtension is the custom extension type that
// supplies claims for tokens.
const TypeOnTokenIssuanceStartCustomExtension = "#microsoft.graph.onTokenIssuanceStartCustomExtension"

type wireExtension struct {
	ODataType                   string          `json:"@odata.type,omitempty"`
	ID                          string          `json:"id,omitempty"`
	DisplayName                 string          `json:"displayName,omitempty"`
	Description                 string          `json:"description,omitempty"`
	EndpointConfiguration       *wireEndpoint   `json:"endpointConfiguration,omitempty"`
	AuthenticationConfiguration *wireTokenAuth  `json:"authenticationConfiguration,omitempty"`
	ClientConfiguration         *wireClientConf `json:"clientConfiguration,omitempty"`
	ClaimsForTokenConfiguration []wireClaim     `json:"claimsForTokenConfiguration,omitempty"`
}

type wireEndpoint struct {
	ODataType string `json:"@odata.type"`
	TargetURL string `json:"targetUrl"`
}

type wireTokenAuth struct {
	ODataType  string `json:"@odata.type"`
	ResourceID string `json:"resourceId"`
}

type wireClientConf struct {
	TimeoutInMilliseconds int32 `json:"timeoutInMilliseconds,omitempty"`
	MaximumRetries        int32 `json:"maximumRetries"` // 0 is a value: no retry
}

type wireClaim struct {
	ClaimIDInAPIResponse string `json:"claimIdInApiResponse"`
}

func (e CustomExtension) wire() wireExtension {
	w := wireExtension{ODataType: e.ODataType, DisplayName: e.DisplayName, Description: e.Description}
	if e.TargetURL != "" {
		w.EndpointConfiguration = &wireEndpoint{ODataType: "#microsoft.graph.httpRequestEndpoint", TargetURL: e.TargetURL}
	}
	if e.ResourceID != "" {
		w.AuthenticationConfiguration = &wireTokenAuth{ODataType: "#microsoft.graph.azureAdTokenAuthentication", ResourceID: e.ResourceID}
	}
	if e.TimeoutMilliseconds != 0 || e.MaximumRetries != 0 {
		w.ClientConfiguration = &wireClientConf{TimeoutInMilliseconds: e.TimeoutMilliseconds, MaximumRetries: e.MaximumRetries}
	}
	for _, c := range e.ClaimsForToken {
		w.ClaimsForTokenConfiguration = append(w.ClaimsForTokenConfiguration, wireClaim{ClaimIDInAPIResponse: c})
	}
	return w
}

func (w wireExtension) extension() CustomExtension {
	e := CustomExtension{ID: w.ID, ODataType: w.ODataType, DisplayName: w.DisplayName, Description: w.Description}
	if w.EndpointConfiguration != nil {
		e.TargetURL = w.EndpointConfiguration.TargetURL
	}
	if w.AuthenticationConfiguration != nil {
		e.ResourceID = w.AuthenticationConfiguration.ResourceID
	}
	if w.ClientConfiguration != nil {
		e.TimeoutMilliseconds, e.MaximumRetries = w.ClientConfiguration.TimeoutInMilliseconds, w.ClientConfiguration.MaximumRetries
	}
	for _, c := range w.ClaimsForTokenConfiguration {
		e.ClaimsForToken = append(e.ClaimsForToken, c.ClaimIDInAPIResponse)
	}
	return e
}

// CreateCustomExtension creates a custom authentication extension; ODataType
// is required.
func (c *Client) CreateCustomExtension(ctx context.Context, e CustomExtension) (CustomExtension, error) {
	if e.ODataType == "" {
		return CustomExtension{}, errors.New("graph: create custom authentication extension: @odata.type is required")
	}
	var out wireExtension
	if err := c.do(ctx, http.MethodPost, extensionsVersion, customExtensionsPath, "", e.wire(), &out); err != nil {
		return CustomExtension{}, err
	}
	return out.extension(), nil
}

// GetCustomExtension reads a custom authentication extension.
func (c *Client) GetCustomExtension(ctx context.Context, id string) (CustomExtension, error) {
	if id == "" {
		return CustomExtension{}, errors.New("graph: get custom authentication extension: empty ID")
	}
	var out wireExtension
	if err := c.do(ctx, http.MethodGet, extensionsVersion, customExtensionsPath+"/"+seg(id), "", nil, &out); err != nil {
		return CustomExtension{}, err
	}
	return out.extension(), nil
}

// ListCustomExtensions reads every custom authentication extension of the
// tenant, following Graph's paging (at most 50 pages).
func (c *Client) ListCustomExtensions(ctx context.Context) ([]CustomExtension, error) {
	return list(ctx, c, extensionsVersion, customExtensionsPath, wireExtension.extension)
}

// UpdateCustomExtension changes a custom authentication extension (PATCH);
// ODataType must be the extension's type.
func (c *Client) UpdateCustomExtension(ctx context.Context, id string, e CustomExtension) error {
	if id == "" || e.ODataType == "" {
		return errors.New("graph: update custom authentication extension: ID and @odata.type are required")
	}
	return c.do(ctx, http.MethodPatch, extensionsVersion, customExtensionsPath+"/"+seg(id), "", e.wire(), nil)
}

// DeleteCustomExtension deletes a custom authentication extension; one that
// does not exist counts as deleted.
func (c *Client) DeleteCustomExtension(ctx context.Context, id string) error {
	return c.deleteObject(ctx, extensionsVersion, customExtensionsPath, id)
}

// Validation is an authenticationConfigurationValidation.
type Validation struct{ Errors, Warnings []GenericError }

// GenericError is one finding of a validation.
type GenericError struct{ Code, Message string }

// ValidateAuthenticationConfiguration asks Graph to check the endpoint and
// authentication configuration of an existing custom authentication extension.
func (c *Client) ValidateAuthenticationConfiguration(ctx context.Context, id string) (Validation, error) {
	if id == "" {
		return Validation{}, errors.New("graph: validate custom authentication extension: empty ID")
	}
	var out struct {
		Errors   []wireGenericError `json:"errors"`
		Warnings []wireGenericError `json:"warnings"`
	}
	if err := c.do(ctx, http.MethodPost, extensionsVersion, customExtensionsPath+"/"+seg(id)+"/validateAuthenticationConfiguration", "", nil, &out); err != nil {
		return Validation{}, err
	}
	var v Validation
	for _, e := range out.Errors {
		v.Errors = append(v.Errors, GenericError(e))
	}
	for _, e := range out.Warnings {
		v.Warnings = append(v.Warnings, GenericError(e))
	}
	return v, nil
}

type wireGenericError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
