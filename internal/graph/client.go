// Package graph is a small Microsoft Graph client for the objects the operator
// registers in Microsoft Entra: API connectors (and their attachment to user
// flows), custom authentication extensions, authentication event listeners,
// and application lookups.
//
// Authentication uses azidentity (client secret, client certificate, or a
// client assertion for workload identity federation). Graph calls are plain
// REST through an azcore pipeline with a bearer-token policy and azcore's
// retry policy (429 and 5xx, honouring Retry-After, bounded). The official
// msgraph-sdk-go is deliberately not used: it is very large generated code,
// and the operator needs only a handful of calls.
//
// The Graph API version used by each call (v1.0 or beta) is listed in
// versions.go.
package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Endpoints are the Microsoft identity platform authority host and the
// Microsoft Graph root of one cloud.
type Endpoints struct {
	// AuthorityHost, e.g. https://login.microsoftonline.com/
	AuthorityHost string
	// Graph, e.g. https://graph.microsoft.com (no version, no trailing slash)
	Graph string
}

// CloudEndpoints returns the endpoints of a named cloud: "AzurePublic" (also
// ""), "AzureUSGovernment" or "AzureChina".
func CloudEndpoints(name string) (Endpoints, error) {
	switch name {
	case "", "AzurePublic":
		return Endpoints{AuthorityHost: cloud.AzurePublic.ActiveDirectoryAuthorityHost, Graph: "https://graph.microsoft.com"}, nil
	case "AzureUSGovernment":
		return Endpoints{AuthorityHost: cloud.AzureGovernment.ActiveDirectoryAuthorityHost, Graph: "https://graph.microsoft.us"}, nil
	case "AzureChina":
		return Endpoints{AuthorityHost: cloud.AzureChina.ActiveDirectoryAuthorityHost, Graph: "https://microsoftgraph.chinacloudapi.cn"}, nil
	}
	return Endpoints{}, fmt.Errorf("graph: unknown cloud %q (want AzurePublic, AzureUSGovernment or AzureChina)", name)
}

// Credentials identify the operator's application registration. Exactly one
// of ClientSecret, CertificatePEM+KeyPEM, or Assertion must be set.
type Credentials struct {
	TenantID, ClientID string
	// ClientSecret is a client secret of the application.
	ClientSecret string
	// CertificatePEM and KeyPEM are a PEM certificate and its RSA private key,
	// as in a kubernetes.io/tls Secret (tls.crt, tls.key).
	CertificatePEM, KeyPEM []byte
	// Assertion returns a signed JWT (e.g. a projected ServiceAccount token)
	// for workload identity federation.
	Assertion func(ctx context.Context) (string, error)
}

// Options configure a Client.
type Options struct {
	// Endpoints of the cloud; see CloudEndpoints.
	Endpoints Endpoints
	// Transport sends the HTTP requests (token and Graph); nil means
	// http.DefaultClient.
	Transport *http.Client
	// Retry overrides the retry policy of Graph and token requests; nil means
	// MaxRetries 3 and MaxRetryDelay 30s on 408, 429, 500, 502, 503, 504. A
	// Retry-After beyond MaxRetryDelay is not waited for: the error is
	// returned (see RetryAfter).
	Retry *policy.RetryOptions
	// Observe, when set, is told of every Graph request sent (each retry too): its method and
	// the HTTP status of the answer, 0 when none came.
	Observe func(method string, status int)
}

// observePolicy reports each request sent to Options.Observe.
type observePolicy func(method string, status int)

func (o observePolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	o(req.Raw().Method, status)
	return resp, err
}

// Client calls Microsoft Graph. It is safe for concurrent use.
type Client struct {
	pl    runtime.Pipeline
	cred  azcore.TokenCredential
	scope string
	graph string
}

// New returns a client authenticating with creds. It does not contact the
// network; use CheckToken to prove the credentials.
func New(creds Credentials, opts Options) (*Client, error) {
	if creds.TenantID == "" || creds.ClientID == "" {
		return nil, errors.New("graph: tenant ID and client ID are required")
	}
	if opts.Endpoints.AuthorityHost == "" || opts.Endpoints.Graph == "" {
		return nil, errors.New("graph: authority host and Graph endpoint are required")
	}
	set := 0
	if creds.ClientSecret != "" {
		set++
	}
	if len(creds.CertificatePEM) > 0 || len(creds.KeyPEM) > 0 {
		set++
	}
	if creds.Assertion != nil {
		set++
	}
	if set != 1 {
		return nil, errors.New("graph: exactly one of client secret, certificate, or assertion is required")
	}
	retry := policy.RetryOptions{MaxRetries: 3, MaxRetryDelay: 30 * time.Second}
	if opts.Retry != nil {
		retry = *opts.Retry
	}
	co := azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: opts.Endpoints.AuthorityHost},
		Retry: retry,
	}
	if opts.Transport != nil {
		co.Transport = opts.Transport
	}
	var cred azcore.TokenCredential
	var err error
	switch {
	case creds.ClientSecret != "":
		cred, err = azidentity.NewClientSecretCredential(creds.TenantID, creds.ClientID, creds.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	case creds.Assertion != nil:
		assert := creds.Assertion
		cred, err = azidentity.NewClientAssertionCredential(creds.TenantID, creds.ClientID, assert,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	default:
		if len(creds.CertificatePEM) == 0 || len(creds.KeyPEM) == 0 {
			return nil, errors.New("graph: a client certificate needs both the certificate and the private key")
		}
		pem := append(append(append([]byte{}, creds.CertificatePEM...), '\n'), creds.KeyPEM...)
		certs, key, perr := azidentity.ParseCertificates(pem, nil)
		if perr != nil {
			return nil, fmt.Errorf("graph: parse client certificate: %w", perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(creds.TenantID, creds.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	}
	if err != nil {
		return nil, fmt.Errorf("graph: credential: %w", err)
	}
	graphRoot := strings.TrimRight(opts.Endpoints.Graph, "/")
	scope := graphRoot + "/.default"
	po := &policy.ClientOptions{Retry: retry}
	if opts.Transport != nil {
		po.Transport = opts.Transport
	}
	perRetry := []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{scope}, nil)}
	if opts.Observe != nil {
		perRetry = append(perRetry, observePolicy(opts.Observe))
	}
	pl := runtime.NewPipeline("graph", "v0", runtime.PipelineOptions{PerRetry: perRetry}, po)
	return &Client{pl: pl, cred: cred, scope: scope, graph: graphRoot}, nil
}

// CheckToken acquires an access token for Graph, proving the credentials.
func (c *Client) CheckToken(ctx context.Context) error {
	if _, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}}); err != nil {
		return fmt.Errorf("graph: acquire token: %w", err)
	}
	return nil
}

// do sends one Graph request. path is relative to the version root (e.g.
// "/identity/apiConnectors"); rawQuery is appended as is. in, when not nil, is
// sent as JSON; out, when not nil, receives the JSON response of a 2xx answer.
func (c *Client) do(ctx context.Context, method string, v apiVersion, path, rawQuery string, in, out any) error {
	req, err := runtime.NewRequest(ctx, method, c.graph+"/"+string(v)+path)
	if err != nil {
		return fmt.Errorf("graph: %s %s: %w", method, path, err)
	}
	if rawQuery != "" {
		req.Raw().URL.RawQuery = rawQuery
	}
	return c.send(req, path, in, out)
}

// send sends a request built by do or list; path names the call in errors.
func (c *Client) send(req *policy.Request, path string, in, out any) error {
	method := req.Raw().Method
	req.Raw().Header.Set("Accept", "application/json")
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("graph: %s %s: encode request: %w", method, path, err)
		}
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(b)), "application/json"); err != nil {
			return fmt.Errorf("graph: %s %s: %w", method, path, err)
		}
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return fmt.Errorf("graph: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("graph: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newError(method, path, resp, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("graph: %s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// maxPages bounds the pages one list call follows.
const maxPages = 50

// list GETs the collection at path and the pages its @odata.nextLink points
// at, at most maxPages, and converts each element with conv. A nextLink must
// be an absolute URL on the Graph host: the bearer token is never sent
// elsewhere.
func list[W, T any](ctx context.Context, c *Client, v apiVersion, path string, conv func(W) T) ([]T, error) {
	out := []T{}
	next := ""
	for page := 1; ; page++ {
		var body struct {
			Value    *[]W   `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if page == 1 {
			if err := c.do(ctx, http.MethodGet, v, path, "", nil, &body); err != nil {
				return nil, err
			}
		} else {
			req, err := runtime.NewRequest(ctx, http.MethodGet, next)
			if err != nil {
				return nil, fmt.Errorf("graph: GET %s: page %d: %w", path, page, err)
			}
			if err := c.send(req, path, nil, &body); err != nil {
				return nil, err
			}
		}
		if body.Value == nil {
			return nil, fmt.Errorf("graph: GET %s: page %d of the answer has no value", path, page)
		}
		for _, w := range *body.Value {
			out = append(out, conv(w))
		}
		if body.NextLink == "" {
			return out, nil
		}
		if page == maxPages {
			return nil, fmt.Errorf("graph: GET %s: more than %d pages", path, maxPages)
		}
		if err := c.checkNextLink(body.NextLink); err != nil {
			return nil, fmt.Errorf("graph: GET %s: page %d: %w", path, page, err)
		}
		next = body.NextLink
	}
}

// checkNextLink accepts an @odata.nextLink that is an absolute URL with the
// scheme and host of the Graph endpoint.
func (c *Client) checkNextLink(link string) error {
	root, err := url.Parse(c.graph)
	if err != nil {
		return fmt.Errorf("parse Graph endpoint: %w", err)
	}
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("@odata.nextLink is not an absolute URL")
	}
	if u.User != nil || !strings.EqualFold(u.Scheme, root.Scheme) || !strings.EqualFold(u.Host, root.Host) {
		return fmt.Errorf("@odata.nextLink points at %s://%s, not at the Graph endpoint %s://%s; refused", u.Scheme, u.Host, root.Scheme, root.Host)
	}
	return nil
}
