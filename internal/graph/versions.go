package graph

import "net/url"

// apiVersion is a Microsoft Graph API version root.
type apiVersion string

const (
	v1   apiVersion = "v1.0"
	beta apiVersion = "beta"
)

// The paths and API versions of every call, in one place. Each is the version
// under which Microsoft's Graph reference documents the call:
//
//   - API connectors, /identity/apiConnectors (list, create, get, update, delete,
//     uploadClientCertificate): v1.0.
//   - Self-service sign-up user flows, /identity/b2xUserFlows/{id}/apiConnectorConfiguration
//     (get with $expand, PUT {step}/$ref): v1.0. Steps: postFederationSignup,
//     postAttributeCollection.
//   - Azure AD B2C user flows, /identity/b2cUserFlows/...: beta only (the only
//     place with the preTokenIssuance step).
//   - Detaching a connector from a step: the reference page of "PUT
//     apiConnectorConfiguration/{step}/$ref" says the body can be {} to disable
//     the API connector; that is what ClearUserFlowAPIConnector sends.
//   - Custom authentication extensions, /identity/customAuthenticationExtensions
//     (list, create, get, update, delete, {id}/validateAuthenticationConfiguration): v1.0.
//   - Authentication event listeners, /identity/authenticationEventListeners
//     (list, create, get, update, delete): v1.0.
//   - Lists follow @odata.nextLink, an absolute URL that must be on the Graph
//     host, for at most 50 pages.
//   - Applications, /applications(appId='{appId}'): v1.0.
const (
	apiConnectorsPath    = "/identity/apiConnectors"
	customExtensionsPath = "/identity/customAuthenticationExtensions"
	eventListenersPath   = "/identity/authenticationEventListeners"
	apiConnectorsVersion = v1
	extensionsVersion    = v1
	listenersVersion     = v1
	applicationsVersion  = v1
)

// userFlowRoot returns the collection path and API version of a user flow kind.
func userFlowRoot(kind UserFlowKind) (string, apiVersion, bool) {
	switch kind {
	case UserFlowB2X:
		return "/identity/b2xUserFlows", v1, true
	case UserFlowB2C:
		return "/identity/b2cUserFlows", beta, true
	}
	return "", "", false
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
