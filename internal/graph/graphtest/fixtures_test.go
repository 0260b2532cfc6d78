package graphtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiconnector/operator/internal/graph"
)

type fixture struct {
	Doc      string          `json:"doc"`
	Comment  string          `json:"comment"`
	Method   string          `json:"method"`
	Path     string          `json:"path"`
	Query    string          `json:"query"`
	Request  json.RawMessage `json:"request"`
	Status   int             `json:"status"`
	Save     string          `json:"save"`
	Response json.RawMessage `json:"response"`
}

func token(t *testing.T, s *Server, clientID, secret string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {s.URL() + "/.default"}}
	resp, err := s.HTTPClient().PostForm(s.URL()+"/"+s.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestTokenEndpointShapes(t *testing.T) {
	s := New(t)
	s.AddApp("app", "secret")
	resp, err := s.HTTPClient().Get(s.URL() + "/" + s.TenantID + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var oidc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&oidc)
	resp.Body.Close()
	for _, k := range []string{"token_endpoint", "authorization_endpoint", "issuer"} {
		if v, _ := oidc[k].(string); !strings.HasPrefix(v, s.URL()+"/"+s.TenantID+"/") {
			t.Errorf("openid-configuration %s = %q", k, v)
		}
	}
	status, ok := token(t, s, "app", "secret")
	if status != 200 || ok["token_type"] != "Bearer" || ok["access_token"] == "" || ok["expires_in"] == nil {
		t.Fatalf("token: %d %v", status, ok)
	}
	status, bad := token(t, s, "app", "wrong")
	if status != 401 || bad["error"] != "invalid_client" || !strings.HasPrefix(bad["error_description"].(string), "AADSTS7000215: ") {
		t.Fatalf("wrong secret: %d %v", status, bad)
	}
	for _, k := range []string{"error_codes", "timestamp", "trace_id", "correlation_id"} {
		if bad[k] == nil {
			t.Errorf("error response without %s", k)
		}
	}
	if status, unknown := token(t, s, "nobody", "x"); status != 400 || !strings.Contains(unknown["error_description"].(string), "AADSTS700016") {
		t.Fatalf("unknown app: %d %v", status, unknown)
	}
}

func TestFixtures(t *testing.T) {
	s := New(t)
	s.AddApp("app", "secret")
	s.AddUserFlow(graph.UserFlowB2X, "B2X_1_testuserflow")
	s.AddUserFlow(graph.UserFlowB2C, "B2C_1_testuserflow")
	const appID = "a13d0fc1-04ab-4ede-b215-63de0174cbb4"
	s.AddApplication(appID, "api://authenticationeventsAPI.contoso.com/"+appID)
	_, tok := token(t, s, "app", "secret")
	bearer := "Bearer " + tok["access_token"].(string)

	p12, thumb := testPKCS12(t, "CertificatePassword")
	vars := map[string]string{"graph": s.URL(), "pkcs12": base64.StdEncoding.EncodeToString(p12), "thumbprint": thumb}
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	sort.Strings(files)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		for k, v := range vars {
			text = strings.ReplaceAll(text, "{{"+k+"}}", v)
		}
		if i := strings.Index(text, "{{"); i >= 0 {
			t.Fatalf("%s: unresolved placeholder near %q", file, text[i:min(len(text), i+30)])
		}
		var f fixture
		if err := json.Unmarshal([]byte(text), &f); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if f.Doc == "" {
			t.Fatalf("%s: no reference page", file)
		}
		var body io.Reader
		if len(f.Request) > 0 {
			body = bytes.NewReader(f.Request)
		}
		u := s.URL() + f.Path
		if f.Query != "" {
			u += "?" + f.Query
		}
		req, err := http.NewRequest(f.Method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearer)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != f.Status {
			t.Fatalf("%s: status %d, want %d: %s", file, resp.StatusCode, f.Status, got)
		}
		if strings.Contains(file, "b2cuserflow-put-apiconnectorconfiguration.json") && s.UserFlowConnector(graph.UserFlowB2C, "B2C_1_testuserflow", "postAttributeCollection") != vars["certConnectorId"] {
			t.Fatalf("%s: connector not attached", file)
		}
		if strings.Contains(file, "-disable.json") && s.UserFlowConnector(graph.UserFlowB2C, "B2C_1_testuserflow", "postAttributeCollection")+s.UserFlowConnector(graph.UserFlowB2X, "B2X_1_testuserflow", "postFederationSignup") != "" {
			t.Fatalf("%s: connector still attached", file)
		}
		if len(f.Response) == 0 {
			if len(bytes.TrimSpace(got)) != 0 {
				t.Errorf("%s: body %s, want none", file, got)
			}
			continue
		}
		var want, have any
		if err := json.Unmarshal(f.Response, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &have); err != nil {
			t.Fatalf("%s: response is not JSON: %s", file, got)
		}
		if err := sameShape("$", want, have); err != nil {
			t.Errorf("%s: %v\n%s", file, err, got)
		}
		if f.Save != "" {
			vars[f.Save], _ = have.(map[string]any)["id"].(string)
		}
	}
}

// sameShape checks that have holds every documented property of want with the
// same JSON type, and equal strings unless want is "*".
func sameShape(path string, want, have any) error {
	switch w := want.(type) {
	case nil:
		if have != nil {
			return fmt.Errorf("%s: %v, want null", path, have)
		}
	case string:
		h, ok := have.(string)
		if !ok || (w != "*" && h != w) {
			return fmt.Errorf("%s: %v, want %q", path, have, w)
		}
	case float64:
		if _, ok := have.(float64); !ok {
			return fmt.Errorf("%s: %v, want a number", path, have)
		}
	case bool:
		if have != w {
			return fmt.Errorf("%s: %v, want %v", path, have, w)
		}
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return fmt.Errorf("%s: %v, want %d elements", path, have, len(w))
		}
		for i := range w {
			if err := sameShape(fmt.Sprintf("%s[%d]", path, i), w[i], h[i]); err != nil {
				return err
			}
		}
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %v, want an object", path, have)
		}
		for k, v := range w {
			if err := sameShape(path+"."+k, v, h[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

func testPKCS12(t *testing.T, password string) ([]byte, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fixture"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p12, err := pkcs12.Modern.Encode(key, cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(der)
	return p12, strings.ToUpper(hex.EncodeToString(sum[:]))
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
