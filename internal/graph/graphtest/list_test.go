package graphtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// graphCall sends one authorised Graph request and returns the status and body.
func graphCall(t *testing.T, s *Server, bearer, method, url, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestListPaging(t *testing.T) {
	s := New(t)
	s.AddApp("app", "secret")
	_, tok := token(t, s, "app", "secret")
	bearer := "Bearer " + tok["access_token"].(string)
	const password = "list-Secret-9"
	var created []string
	for range 5 {
		status, b := graphCall(t, s, bearer, http.MethodPost, s.URL()+"/v1.0/identity/apiConnectors",
			`{"displayName":"c","targetUrl":"https://api.example.com","authenticationConfiguration":{"@odata.type":"#microsoft.graph.basicAuthentication","username":"u","password":"`+password+`"}}`)
		var c struct{ ID string }
		if status != http.StatusCreated || json.Unmarshal(b, &c) != nil {
			t.Fatalf("create: %d %s", status, b)
		}
		created = append(created, c.ID)
	}
	s.SetPageSize(2)

	var seen []string
	var sizes []int
	next := s.URL() + "/v1.0/identity/apiConnectors"
	for next != "" {
		status, b := graphCall(t, s, bearer, http.MethodGet, next, "")
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, status, b)
		}
		if bytes.Contains(b, []byte(password)) {
			t.Fatalf("a list answer holds the password: %s", b)
		}
		var p struct {
			Context  string `json:"@odata.context"`
			NextLink string `json:"@odata.nextLink"`
			Value    []struct {
				ID   string
				Auth struct {
					Password string `json:"password"`
				} `json:"authenticationConfiguration"`
			}
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.Context != s.URL()+"/v1.0/$metadata#identity/apiConnectors" {
			t.Errorf("@odata.context %q", p.Context)
		}
		if p.NextLink != "" && !strings.HasPrefix(p.NextLink, s.URL()+"/v1.0/identity/apiConnectors?$skiptoken=") {
			t.Fatalf("@odata.nextLink %q", p.NextLink)
		}
		sizes = append(sizes, len(p.Value))
		for _, v := range p.Value {
			if v.Auth.Password != "******" {
				t.Errorf("password %q, want ******", v.Auth.Password)
			}
			seen = append(seen, v.ID)
		}
		next = p.NextLink
		if len(sizes) > 10 {
			t.Fatal("paging does not end")
		}
	}
	slices.Sort(created)
	if !slices.Equal(sizes, []int{2, 2, 1}) || !slices.Equal(seen, created) {
		t.Fatalf("pages %v, IDs %v, want %v", sizes, seen, created)
	}

	// A deletion between two pages does not make the next page skip an object.
	status, b := graphCall(t, s, bearer, http.MethodGet, s.URL()+"/v1.0/identity/apiConnectors", "")
	var first struct {
		NextLink string `json:"@odata.nextLink"`
	}
	if status != http.StatusOK || json.Unmarshal(b, &first) != nil || first.NextLink == "" {
		t.Fatalf("first page: %d %s", status, b)
	}
	s.DeleteObject(created[0])
	status, b = graphCall(t, s, bearer, http.MethodGet, first.NextLink, "")
	if status != http.StatusOK || !bytes.Contains(b, []byte(created[2])) || !bytes.Contains(b, []byte(created[3])) {
		t.Fatalf("second page after a deletion: %d %s", status, b)
	}

	for _, q := range []string{"?$skiptoken=***", "?$filter=displayName%20eq%20'c'", "?$top=1"} {
		if status, b := graphCall(t, s, bearer, http.MethodGet, s.URL()+"/v1.0/identity/apiConnectors"+q, ""); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, status, b)
		}
	}
	for _, c := range []string{"customAuthenticationExtensions", "authenticationEventListeners"} {
		status, b := graphCall(t, s, bearer, http.MethodGet, s.URL()+"/v1.0/identity/"+c, "")
		if status != http.StatusOK || !bytes.Contains(b, []byte(`"value":[]`)) {
			t.Errorf("%s: %d %s", c, status, b)
		}
	}
}
