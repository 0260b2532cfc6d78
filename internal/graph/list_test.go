package graph_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/internal/graph"
)

// seed creates n API connectors, custom extensions and event listeners.
func seed(t *testing.T, c *graph.Client, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: fmt.Sprintf("connector %d", i), TargetURL: "https://api.example.com/" + fmt.Sprint(i),
			Basic: &graph.BasicAuthentication{Username: "u", Password: "list-pass"}}); err != nil {
			t.Fatal(err)
		}
		ext, err := c.CreateCustomExtension(ctx, graph.CustomExtension{ODataType: graph.TypeOnTokenIssuanceStartCustomExtension, DisplayName: fmt.Sprintf("ext %d", i),
			TargetURL: "https://claims.example.com/token", ResourceID: "api://claims.example.com/a", MaximumRetries: 1, ClaimsForToken: []string{"c"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateEventListener(ctx, graph.EventListener{ODataType: "#microsoft.graph.onTokenIssuanceStartListener",
			HandlerODataType: "#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler", ExtensionID: ext.ID, AppIDs: []string{fmt.Sprint("app-", i)}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListPaging(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	seed(t, c, 5)
	srv.SetPageSize(2)

	conns, err := c.ListAPIConnectors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := srv.APIConnectors()
	if len(conns) != 5 || len(stored) != 5 {
		t.Fatalf("listed %d connectors, stored %d, want 5", len(conns), len(stored))
	}
	for i, got := range conns {
		want, err := c.GetAPIConnector(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != stored[i].ID || got.DisplayName != want.DisplayName || got.TargetURL != want.TargetURL || got.Basic == nil ||
			*got.Basic != *want.Basic || got.Basic.Password != "" || got.Certificate != nil {
			t.Errorf("listed %+v %+v, GET %+v %+v", got, got.Basic, want, want.Basic)
		}
	}

	exts, err := c.ListCustomExtensions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	storedExts := srv.CustomExtensions()
	if len(exts) != 5 || len(storedExts) != 5 {
		t.Fatalf("listed %d extensions, want 5", len(exts))
	}
	for i, got := range exts {
		want, err := c.GetCustomExtension(ctx, got.ID)
		if err != nil || !equalExt(got, want) || got.ID != storedExts[i].ID {
			t.Errorf("listed %+v, GET %+v %v", got, want, err)
		}
	}

	ls, err := c.ListEventListeners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	storedLs := srv.EventListeners()
	if len(ls) != 5 || len(storedLs) != 5 {
		t.Fatalf("listed %d listeners, want 5", len(ls))
	}
	for i, got := range ls {
		want, err := c.GetEventListener(ctx, got.ID)
		if err != nil || !equalListener(got, want) || got.ID != storedLs[i].ID || got.ExtensionID == "" || len(got.AppIDs) != 1 {
			t.Errorf("listed %+v, GET %+v %v", got, want, err)
		}
	}

	for _, p := range []string{"/v1.0/identity/apiConnectors", "/v1.0/identity/customAuthenticationExtensions", "/v1.0/identity/authenticationEventListeners"} {
		pages := 0
		for _, r := range srv.Requests() {
			if r.Method == http.MethodGet && r.Path == p {
				pages++
			}
		}
		if pages != 3 {
			t.Errorf("%s: %d pages read, want 3", p, pages)
		}
	}
}

func TestListEmpty(t *testing.T) {
	_, c := setup(t, nil)
	ctx := context.Background()
	conns, err := c.ListAPIConnectors(ctx)
	if err != nil || len(conns) != 0 {
		t.Fatalf("connectors: %v %v", conns, err)
	}
	exts, err := c.ListCustomExtensions(ctx)
	if err != nil || len(exts) != 0 {
		t.Fatalf("extensions: %v %v", exts, err)
	}
	ls, err := c.ListEventListeners(ctx)
	if err != nil || len(ls) != 0 {
		t.Fatalf("listeners: %v %v", ls, err)
	}
}

// rewriteBody replaces from with to in every Graph answer.
type rewriteBody struct {
	base     http.RoundTripper
	from, to string
}

func (r rewriteBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/v1.0/") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte(r.from), []byte(r.to))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func TestListRefusesNextLinkToAnotherHost(t *testing.T) {
	srv, c := setup(t, nil)
	seed(t, c, 3)
	srv.SetPageSize(2)
	var hits atomic.Int32
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	defer other.Close()
	hc := srv.HTTPClient()
	lc, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, ClientSecret: "right-secret"},
		graph.Options{Endpoints: srv.Endpoints(), Transport: &http.Client{Transport: rewriteBody{base: hc.Transport, from: `"@odata.nextLink":"` + srv.URL(), to: `"@odata.nextLink":"` + other.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	conns, err := lc.ListAPIConnectors(context.Background())
	if err == nil || conns != nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), strings.TrimPrefix(other.URL, "https://")) ||
		!strings.HasPrefix(err.Error(), "graph: GET /identity/apiConnectors: ") {
		t.Fatalf("list with a foreign nextLink: %v %v", conns, err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the other host received %d requests", n)
	}
	// The same client follows a nextLink on the Graph host.
	srv2, c2 := setup(t, nil)
	seed(t, c2, 3)
	srv2.SetPageSize(2)
	if got, err := c2.ListAPIConnectors(context.Background()); err != nil || len(got) != 3 {
		t.Fatalf("%d %v", len(got), err)
	}
}

func TestListRejectsPageWithoutValue(t *testing.T) {
	srv, c := setup(t, nil)
	seed(t, c, 1)
	lc, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, ClientSecret: "right-secret"},
		graph.Options{Endpoints: srv.Endpoints(), Transport: &http.Client{Transport: rewriteBody{base: srv.HTTPClient().Transport, from: `"value":`, to: `"values":`}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := lc.ListEventListeners(context.Background()); err == nil || got != nil || !strings.Contains(err.Error(), "has no value") {
		t.Fatalf("%v %v", got, err)
	}
}

func TestListThrottledPageRetried(t *testing.T) {
	srv, c := setup(t, nil)
	seed(t, c, 5)
	srv.SetPageSize(2)
	var mu sync.Mutex
	var seen []string
	lc, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, ClientSecret: "right-secret"},
		graph.Options{Endpoints: srv.Endpoints(), Transport: srv.HTTPClient(), Observe: func(method string, status int) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %d", method, status))
			if len(seen) == 1 {
				srv.Throttle(1, time.Second) // the second page is throttled once
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	exts, err := lc.ListCustomExtensions(context.Background())
	if err != nil || len(exts) != 5 {
		t.Fatalf("%d %v", len(exts), err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %s, before Retry-After", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"GET 200", "GET 429", "GET 200", "GET 200"}; !slices.Equal(seen, want) {
		t.Fatalf("observed %v, want %v", seen, want)
	}
}

func TestListPageLimit(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	srv.SetPageSize(1)
	for i := range 51 {
		if _, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: fmt.Sprint(i), TargetURL: "https://api.example.com",
			Basic: &graph.BasicAuthentication{Username: "u", Password: "p"}}); err != nil {
			t.Fatal(err)
		}
		if i == 49 {
			if got, err := c.ListAPIConnectors(ctx); err != nil || len(got) != 50 {
				t.Fatalf("50 pages: %d %v", len(got), err)
			}
		}
	}
	got, err := c.ListAPIConnectors(ctx)
	if err == nil || got != nil || !strings.Contains(err.Error(), "more than 50 pages") {
		t.Fatalf("51 pages: %d %v", len(got), err)
	}
	srv.SetPageSize(0) // back to 100 a page
	if got, err := c.ListAPIConnectors(ctx); err != nil || len(got) != 51 {
		t.Fatalf("default page size: %d %v", len(got), err)
	}
}
