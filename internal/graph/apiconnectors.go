package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
)

// APIConnector is an identityApiConnector: an API that user flows call.
type APIConnector struct {
	ID, DisplayName, TargetURL string
	// Basic is HTTP basic authentication. Graph never returns the password:
	// on read Password is empty.
	Basic *BasicAuthentication
	// Certificate is client certificate authentication; only sent on create
	// and update.
	Certificate *PKCS12Certificate
	// CertificateThumbprints are the thumbprints of the uploaded client
	// certificates, as read back from Graph.
	CertificateThumbprints []string
}

// BasicAuthentication is #microsoft.graph.basicAuthentication.
type BasicAuthentication struct{ Username, Password string }

// PKCS12Certificate is #microsoft.graph.pkcs12Certificate: a PKCS#12 file
// (certificate and private key) and its password.
type PKCS12Certificate struct {
	PKCS12   []byte
	Password string
}

const (
	typeBasic      = "#microsoft.graph.basicAuthentication"
	typePKCS12     = "#microsoft.graph.pkcs12Certificate"
	typeClientCert = "#microsoft.graph.clientCertificateAuthentication"
)

type wireAPIConnector struct {
	ID                          string    `json:"id,omitempty"`
	DisplayName                 string    `json:"displayName,omitempty"`
	TargetURL                   string    `json:"targetUrl,omitempty"`
	AuthenticationConfiguration *wireAuth `json:"authenticationConfiguration,omitempty"`
}

type wireAuth struct {
	ODataType       string                `json:"@odata.type"`
	Username        string                `json:"username,omitempty"`
	Password        string                `json:"password,omitempty"`
	PKCS12Value     string                `json:"pkcs12Value,omitempty"`
	CertificateList []wireCertInformation `json:"certificateList,omitempty"`
}

type wireCertInformation struct {
	Thumbprint string `json:"thumbprint"`
	IsActive   bool   `json:"isActive,omitempty"`
}

func (a APIConnector) wire() (wireAPIConnector, error) {
	w := wireAPIConnector{DisplayName: a.DisplayName, TargetURL: a.TargetURL}
	switch {
	case a.Basic != nil && a.Certificate != nil:
		return w, errors.New("an API connector has either basic or certificate authentication, not both")
	case a.Basic != nil:
		w.AuthenticationConfiguration = &wireAuth{ODataType: typeBasic, Username: a.Basic.Username, Password: a.Basic.Password}
	case a.Certificate != nil:
		w.AuthenticationConfiguration = &wireAuth{ODataType: typePKCS12,
			PKCS12Value: base64.StdEncoding.EncodeToString(a.Certificate.PKCS12), Password: a.Certificate.Password}
	}
	return w, nil
}

func (w wireAPIConnector) connector() APIConnector {
	a := APIConnector{ID: w.ID, DisplayName: w.DisplayName, TargetURL: w.TargetURL}
	if ac := w.AuthenticationConfiguration; ac != nil {
		switch ac.ODataType {
		case typeBasic:
			// Graph masks the password ("******"); never pass it on.
			a.Basic = &BasicAuthentication{Username: ac.Username}
		case typeClientCert, typePKCS12:
			for _, c := range ac.CertificateList {
				a.CertificateThumbprints = append(a.CertificateThumbprints, c.Thumbprint)
			}
		}
	}
	return a
}

// CreateAPIConnector creates an API connector and returns it as Graph stored it.
func (c *Client) CreateAPIConnector(ctx context.Context, a APIConnector) (APIConnector, error) {
	w, err := a.wire()
	if err != nil {
		return APIConnector{}, fmt.Errorf("graph: create API connector: %w", err)
	}
	var out wireAPIConnector
	if err := c.do(ctx, http.MethodPost, apiConnectorsVersion, apiConnectorsPath, "", w, &out); err != nil {
		return APIConnector{}, err
	}
	return out.connector(), nil
}

// GetAPIConnector reads an API connector.
func (c *Client) GetAPIConnector(ctx context.Context, id string) (APIConnector, error) {
	if id == "" {
		return APIConnector{}, errors.New("graph: get API connector: empty ID")
	}
	var out wireAPIConnector
	if err := c.do(ctx, http.MethodGet, apiConnectorsVersion, apiConnectorsPath+"/"+seg(id), "", nil, &out); err != nil {
		return APIConnector{}, err
	}
	return out.connector(), nil
}

// ListAPIConnectors reads every API connector of the tenant, following
// Graph's paging (at most 50 pages). Passwords are never returned.
func (c *Client) ListAPIConnectors(ctx context.Context) ([]APIConnector, error) {
	return list(ctx, c, apiConnectorsVersion, apiConnectorsPath, wireAPIConnector.connector)
}

// UpdateAPIConnector changes the non-empty fields of an API connector (PATCH).
func (c *Client) UpdateAPIConnector(ctx context.Context, id string, a APIConnector) error {
	if id == "" {
		return errors.New("graph: update API connector: empty ID")
	}
	w, err := a.wire()
	if err != nil {
		return fmt.Errorf("graph: update API connector %s: %w", id, err)
	}
	return c.do(ctx, http.MethodPatch, apiConnectorsVersion, apiConnectorsPath+"/"+seg(id), "", w, nil)
}

// UploadClientCertificate adds a client certificate to an API connector
// (POST .../uploadClientCertificate); Graph switches the connector to client
// certificate authentication.
func (c *Client) UploadClientCertificate(ctx context.Context, id string, cert PKCS12Certificate) error {
	if id == "" {
		return errors.New("graph: upload client certificate: empty ID")
	}
	if len(cert.PKCS12) == 0 {
		return errors.New("graph: upload client certificate: empty PKCS#12 data")
	}
	body := map[string]string{"pkcs12Value": base64.StdEncoding.EncodeToString(cert.PKCS12), "password": cert.Password}
	return c.do(ctx, http.MethodPost, apiConnectorsVersion, apiConnectorsPath+"/"+seg(id)+"/uploadClientCertificate", "", body, nil)
}

// DeleteAPIConnector deletes an API connector; a connector that does not
// exist counts as deleted.
func (c *Client) DeleteAPIConnector(ctx context.Context, id string) error {
	return c.deleteObject(ctx, apiConnectorsVersion, apiConnectorsPath, id)
}

func (c *Client) deleteObject(ctx context.Context, v apiVersion, collection, id string) error {
	if id == "" {
		return fmt.Errorf("graph: delete %s: empty ID", collection)
	}
	err := c.do(ctx, http.MethodDelete, v, collection+"/"+seg(id), "", nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}
