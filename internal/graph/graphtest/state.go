package graphtest

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiconnector/operator/internal/graph"
)

type state struct {
	connectors   map[string]*connector
	flows        map[graph.UserFlowKind]map[string]map[string]string // kind → flow → step → connector ID
	extensions   map[string]*extension
	listeners    map[string]*listener
	applications map[string]*graph.Application // by appId
	fresh        map[string]bool               // created, not yet read
}

func newState() state {
	return state{
		connectors:   map[string]*connector{},
		flows:        map[graph.UserFlowKind]map[string]map[string]string{graph.UserFlowB2X: {}, graph.UserFlowB2C: {}},
		extensions:   map[string]*extension{},
		listeners:    map[string]*listener{},
		applications: map[string]*graph.Application{},
		fresh:        map[string]bool{},
	}
}

// steps lists the apiConnectorConfiguration properties of each user flow kind.
var steps = map[graph.UserFlowKind][]string{
	graph.UserFlowB2X: {"postFederationSignup", "postAttributeCollection"},
	graph.UserFlowB2C: {"postFederationSignup", "postAttributeCollection", "preTokenIssuance"},
}

// connector is a stored identityApiConnector, passwords included.
type connector struct {
	ID, DisplayName, TargetURL string
	Basic                      *graph.BasicAuthentication
	Certs                      []storedCert
}

type storedCert struct {
	PKCS12     []byte
	Password   string
	Thumbprint string
	NotBefore  time.Time
	NotAfter   time.Time
}

// Wire shapes, after Microsoft's Graph reference. Unknown properties are
// rejected as Graph does.
type wireConnector struct {
	ID                          string    `json:"id,omitempty"`
	DisplayName                 *string   `json:"displayName,omitempty"`
	TargetURL                   *string   `json:"targetUrl,omitempty"`
	AuthenticationConfiguration *wireAuth `json:"authenticationConfiguration,omitempty"`
}

type wireAuth struct {
	ODataType   string `json:"@odata.type"`
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	PKCS12Value string `json:"pkcs12Value,omitempty"`
}

type extension struct {
	ODataType                   string           `json:"@odata.type"`
	ID                          string           `json:"id,omitempty"`
	DisplayName                 string           `json:"displayName,omitempty"`
	Description                 string           `json:"description,omitempty"`
	EndpointConfiguration       *endpointConfig  `json:"endpointConfiguration,omitempty"`
	AuthenticationConfiguration *tokenAuthConfig `json:"authenticationConfiguration,omitempty"`
	ClientConfiguration         *clientConfig    `json:"clientConfiguration,omitempty"`
	BehaviorOnError             json.RawMessage  `json:"behaviorOnError,omitempty"`
	ClaimsForTokenConfiguration []claimConfig    `json:"claimsForTokenConfiguration,omitempty"`
}

type endpointConfig struct {
	ODataType string `json:"@odata.type"`
	TargetURL string `json:"targetUrl"`
}

type tokenAuthConfig struct {
	ODataType  string `json:"@odata.type"`
	ResourceID string `json:"resourceId"`
}

type clientConfig struct {
	ODataType             string `json:"@odata.type,omitempty"`
	TimeoutInMilliseconds int32  `json:"timeoutInMilliseconds,omitempty"`
	MaximumRetries        int32  `json:"maximumRetries"`
}

type claimConfig struct {
	ClaimIDInAPIResponse string `json:"claimIdInApiResponse"`
}

type listener struct {
	ODataType   string      `json:"@odata.type"`
	ID          string      `json:"id,omitempty"`
	DisplayName string      `json:"displayName,omitempty"`
	Conditions  *conditions `json:"conditions,omitempty"`
	Handler     *handler    `json:"handler,omitempty"`
}

type conditions struct {
	Applications *appConditions `json:"applications,omitempty"`
}

type appConditions struct {
	IncludeApplications []appCondition `json:"includeApplications"`
}

type appCondition struct {
	ODataType string `json:"@odata.type,omitempty"`
	AppID     string `json:"appId"`
}

type handler struct {
	ODataType       string `json:"@odata.type"`
	CustomExtension *struct {
		ID string `json:"id"`
	} `json:"customExtension,omitempty"`
	Configuration json.RawMessage `json:"configuration,omitempty"`
}

var extensionTypes = []string{
	"#microsoft.graph.onTokenIssuanceStartCustomExtension",
	"#microsoft.graph.onAttributeCollectionStartCustomExtension",
	"#microsoft.graph.onAttributeCollectionSubmitCustomExtension",
	"#microsoft.graph.onOtpSendCustomExtension",
}

var listenerTypes = map[string][]string{ // listener type → handler types
	"#microsoft.graph.onTokenIssuanceStartListener":            {"#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler"},
	"#microsoft.graph.onAttributeCollectionStartListener":      {"#microsoft.graph.onAttributeCollectionStartCustomExtensionHandler"},
	"#microsoft.graph.onAttributeCollectionSubmitListener":     {"#microsoft.graph.onAttributeCollectionSubmitCustomExtensionHandler"},
	"#microsoft.graph.onEmailOtpSendListener":                  {"#microsoft.graph.onOtpSendCustomExtensionHandler"},
	"#microsoft.graph.onAuthenticationMethodLoadStartListener": nil,
}

// badRequest is a 400 answer of a handler.
type badRequest struct{ code, msg string }

func (b badRequest) Error() string { return b.msg }

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest{"BadRequest", "Invalid request body: " + err.Error()}
	}
	return nil
}

func checkHTTPSURL(field, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return badRequest{"BadRequest", fmt.Sprintf("Invalid value for '%s': must be an absolute URL.", field)}
	}
	return nil
}

// decodeCert checks a pkcs12Certificate as Graph does: it must open with its password.
func decodeCert(b64, password string) (storedCert, error) {
	pfx, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return storedCert{}, badRequest{"BadRequest", "pkcs12Value is not valid base64."}
	}
	_, cert, _, err := pkcs12.DecodeChain(pfx, password)
	if err != nil {
		return storedCert{}, badRequest{"BadRequest", "The certificate could not be read; check the pkcs12Value and the password."}
	}
	sum := sha1.Sum(cert.Raw)
	return storedCert{PKCS12: pfx, Password: password, Thumbprint: strings.ToUpper(hex.EncodeToString(sum[:])),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}, nil
}

func (c *connector) apply(w wireConnector, create bool) error {
	if create && (w.DisplayName == nil || w.TargetURL == nil || w.AuthenticationConfiguration == nil) {
		return badRequest{"BadRequest", "displayName, targetUrl and authenticationConfiguration are required."}
	}
	if w.TargetURL != nil {
		if err := checkHTTPSURL("targetUrl", *w.TargetURL); err != nil {
			return err
		}
	}
	var basic *graph.BasicAuthentication
	var cert *storedCert
	if a := w.AuthenticationConfiguration; a != nil {
		switch a.ODataType {
		case "#microsoft.graph.basicAuthentication":
			if a.Username == "" || a.Password == "" || a.PKCS12Value != "" {
				return badRequest{"BadRequest", "basicAuthentication needs username and password."}
			}
			basic = &graph.BasicAuthentication{Username: a.Username, Password: a.Password}
		case "#microsoft.graph.pkcs12Certificate":
			if a.Username != "" {
				return badRequest{"BadRequest", "pkcs12Certificate has no username."}
			}
			sc, err := decodeCert(a.PKCS12Value, a.Password)
			if err != nil {
				return err
			}
			cert = &sc
		default:
			return badRequest{"BadRequest", "Unsupported authenticationConfiguration type '" + a.ODataType + "'."}
		}
	}
	if w.DisplayName != nil {
		c.DisplayName = *w.DisplayName
	}
	if w.TargetURL != nil {
		c.TargetURL = *w.TargetURL
	}
	if basic != nil {
		c.Basic, c.Certs = basic, nil
	}
	if cert != nil {
		c.Basic, c.Certs = nil, []storedCert{*cert}
	}
	return nil
}

// wire renders a connector as Graph does: passwords masked, certificates as
// clientCertificateAuthentication with their public information.
func (c *connector) wire() map[string]any {
	m := map[string]any{"id": c.ID, "displayName": c.DisplayName, "targetUrl": c.TargetURL}
	switch {
	case c.Basic != nil:
		m["authenticationConfiguration"] = map[string]any{"@odata.type": "#microsoft.graph.basicAuthentication", "username": c.Basic.Username, "password": "******"}
	case len(c.Certs) > 0:
		list := []map[string]any{}
		for i, sc := range c.Certs {
			list = append(list, map[string]any{"thumbprint": sc.Thumbprint, "notBefore": sc.NotBefore.Unix(), "notAfter": sc.NotAfter.Unix(), "isActive": i == len(c.Certs)-1})
		}
		m["authenticationConfiguration"] = map[string]any{"@odata.type": "#microsoft.graph.clientCertificateAuthentication", "certificateList": list}
	}
	return m
}

func (e *extension) validate() error {
	if !slices.Contains(extensionTypes, e.ODataType) {
		return badRequest{"BadRequest", "Unsupported or missing @odata.type '" + e.ODataType + "'."}
	}
	if e.EndpointConfiguration == nil || e.EndpointConfiguration.ODataType != "#microsoft.graph.httpRequestEndpoint" {
		return badRequest{"BadRequest", "endpointConfiguration (#microsoft.graph.httpRequestEndpoint) is required."}
	}
	if err := checkHTTPSURL("targetUrl", e.EndpointConfiguration.TargetURL); err != nil {
		return err
	}
	if e.AuthenticationConfiguration == nil || e.AuthenticationConfiguration.ODataType != "#microsoft.graph.azureAdTokenAuthentication" || e.AuthenticationConfiguration.ResourceID == "" {
		return badRequest{"BadRequest", "authenticationConfiguration (#microsoft.graph.azureAdTokenAuthentication with resourceId) is required."}
	}
	if len(e.ClaimsForTokenConfiguration) > 0 && e.ODataType != "#microsoft.graph.onTokenIssuanceStartCustomExtension" {
		return badRequest{"BadRequest", "claimsForTokenConfiguration is only valid on onTokenIssuanceStartCustomExtension."}
	}
	return nil
}

func (e *extension) public() graph.CustomExtension {
	out := graph.CustomExtension{ID: e.ID, ODataType: e.ODataType, DisplayName: e.DisplayName, Description: e.Description}
	if e.EndpointConfiguration != nil {
		out.TargetURL = e.EndpointConfiguration.TargetURL
	}
	if e.AuthenticationConfiguration != nil {
		out.ResourceID = e.AuthenticationConfiguration.ResourceID
	}
	if e.ClientConfiguration != nil {
		out.TimeoutMilliseconds, out.MaximumRetries = e.ClientConfiguration.TimeoutInMilliseconds, e.ClientConfiguration.MaximumRetries
	}
	for _, c := range e.ClaimsForTokenConfiguration {
		out.ClaimsForToken = append(out.ClaimsForToken, c.ClaimIDInAPIResponse)
	}
	return out
}

func (st *state) validateListener(l *listener) error {
	handlers, ok := listenerTypes[l.ODataType]
	if !ok {
		return badRequest{"BadRequest", "Unsupported or missing @odata.type '" + l.ODataType + "'."}
	}
	if l.Handler != nil {
		if !slices.Contains(handlers, l.Handler.ODataType) {
			return badRequest{"BadRequest", "Handler type '" + l.Handler.ODataType + "' is not valid for " + l.ODataType + "."}
		}
		if l.Handler.CustomExtension == nil || st.extensions[l.Handler.CustomExtension.ID] == nil {
			return badRequest{"BadRequest", "The handler's customExtension does not exist."}
		}
	}
	return nil
}

func (l *listener) public() graph.EventListener {
	out := graph.EventListener{ID: l.ID, ODataType: l.ODataType}
	if l.Conditions != nil && l.Conditions.Applications != nil {
		for _, a := range l.Conditions.Applications.IncludeApplications {
			out.AppIDs = append(out.AppIDs, a.AppID)
		}
	}
	if l.Handler != nil {
		out.HandlerODataType = l.Handler.ODataType
		if l.Handler.CustomExtension != nil {
			out.ExtensionID = l.Handler.CustomExtension.ID
		}
	}
	return out
}

// validate checks an extension's authentication configuration the way
// validateAuthenticationConfiguration does.
func (st *state) validateAuth(e *extension) map[string]any {
	errs := []map[string]string{}
	add := func(code, msg string) { errs = append(errs, map[string]string{"code": code, "message": msg}) }
	target, _ := url.Parse(e.EndpointConfiguration.TargetURL)
	if target == nil || target.Scheme != "https" {
		add("TargetUrlNotHttps", "The targetUrl must use https.")
	}
	rid := e.AuthenticationConfiguration.ResourceID
	u, err := url.Parse(rid)
	appID := ""
	if err != nil || u.Scheme != "api" || u.Host == "" || strings.Count(strings.Trim(u.Path, "/"), "/") != 0 || strings.Trim(u.Path, "/") == "" {
		add("IncorrectResourceIdFormat", "ResourceId should be in the format of 'api://{fully qualified domain name}/{appid}'")
	} else {
		appID = strings.Trim(u.Path, "/")
		if target == nil || !strings.EqualFold(u.Host, target.Hostname()) {
			add("DomainNameDoesNotMatch", "The fully qualified domain name in resourceId should match that of the targetUrl")
		}
		if a := st.applications[appID]; a == nil {
			add("ServicePrincipalNotFound", "The appId of the resourceId should correspond to a real service principal in the tenant")
		} else if !slices.Contains(a.IdentifierURIs, rid) {
			add("ResourceIdNotAnIdentifierUri", "The resourceId should be an identifier URI (identifierUris) of the application "+appID)
		}
	}
	return map[string]any{
		"@odata.context": "$metadata#microsoft.graph.authenticationConfigurationValidation",
		"errors":         errs,
		"warnings":       []map[string]string{},
	}
}

func newID() string { return uuid.NewString() }
