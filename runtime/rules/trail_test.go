package rules_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apiconnector/operator/runtime/rules"
)

func TestCallTrailRecordsOutcomesWithoutURLs(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{}`))
	}))
	defer ok.Close()
	e := compile(t, `  step: PostAttributeCollection
  failurePolicy: Ignore
  calls:
  - name: slow
    url: '`+hang.URL+`'
    timeout: 50ms
    failurePolicy: Ignore
  - name: fine
    url: '`+ok.URL+`'
    method: GET
  - name: skipped
    url: '`+ok.URL+`'
    when: "false"
`, rules.Options{EgressAllow: loopback})
	trail := &rules.CallTrail{}
	if _, err := e.Evaluate(rules.WithCallTrail(context.Background(), trail), request(t, map[string]any{"email": "a@b.example"})); err != nil {
		t.Fatal(err)
	}
	got := map[string]rules.CallRecord{}
	for _, r := range trail.Records() {
		got[r.Name] = r
	}
	if len(got) != 2 {
		t.Fatalf("want the two calls that ran, got %+v", trail.Records())
	}
	if r := got["slow"]; r.Status != 0 || r.Error != "timeout" || r.DurationMS < 50 {
		t.Errorf("slow: %+v", r)
	}
	if r := got["fine"]; r.Status != 200 || r.Error != "" {
		t.Errorf("fine: %+v", r)
	}
	// Without a trail in the context nothing is recorded and nothing fails.
	if d := eval(t, e, map[string]any{"email": "a@b.example"}); d.Action != "Continue" {
		t.Errorf("without a trail: %+v", d)
	}
}
