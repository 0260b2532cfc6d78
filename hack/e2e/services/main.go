// Command e2e-services runs the external systems the sample connectors call, as real HTTP services
// inside the e2e cluster (one image, one role per Deployment):
//
//	e2e-services approvals  an access-request approval system (Bearer token)
//	e2e-services verify     an identity-verification (KYC) service (HTTP Basic, plus an X-Api-Key
//	                        header when VERIFY_API_KEY is set)
//	e2e-services sink       a CloudEvents sink that records what it receives (optional Bearer token);
//	                        it also plays the HTTP APIs the samples call without needing an answer
//	                        (e-mail sending: 202 to any POST) and a loyalty system's member look-up
//	                        (GET /v1/members?objectId=, members from MEMBERS)
//	e2e-services issuer     an OpenID provider standing in for Microsoft Entra: OpenID configurations
//	                        and JWKS as Entra publishes them, and tokens signed for the claims the
//	                        e2e client asks for (POST /admin/tokens, Bearer ISSUER_ADMIN_TOKEN)
//
// Each listens on --listen (default :8080) and has /healthz. With --tls-cert and --tls-key it also
// serves HTTPS on --tls-listen (default :8443): the connectors call the services over HTTPS, as
// they would call the real systems. The /admin/ endpoints let the e2e client act as the approver
// and read what the connectors sent (each record says whether it came over TLS); they use the
// same credentials. GET /admin/dial?addr=IP:PORT (every role) opens a TCP connection from the
// service's pod, so the e2e client can check which pods a NetworkPolicy lets through.
package main

import (
	"crypto/subtle"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

const maxRecords = 10000

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-services approvals|verify|sink|issuer [--listen :8080]")
		os.Exit(2)
	}
	role := os.Args[1]
	fs := flag.NewFlagSet(role, flag.ExitOnError)
	listen := fs.String("listen", ":8080", "listen address")
	tlsListen := fs.String("tls-listen", ":8443", "HTTPS listen address (with --tls-cert and --tls-key)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain for HTTPS")
	tlsKey := fs.String("tls-key", "", "PEM private key for HTTPS")
	_ = fs.Parse(os.Args[2:])

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /admin/dial", dial)
	switch role {
	case "approvals":
		newApprovals(os.Getenv("APPROVALS_TOKEN"), os.Getenv("PREAPPROVED_DOMAINS")).register(mux)
	case "verify":
		newVerify(os.Getenv("VERIFY_USERNAME"), os.Getenv("VERIFY_PASSWORD"), os.Getenv("VERIFY_API_KEY")).register(mux)
	case "sink":
		sk, err := newSink(os.Getenv("SINK_TOKEN"), os.Getenv("MEMBERS"))
		if err != nil {
			log.Fatal(err)
		}
		sk.register(mux)
	case "issuer":
		is, err := newIssuer(os.Getenv("ISSUER_ADMIN_TOKEN"))
		if err != nil {
			log.Fatal(err)
		}
		is.register(mux)
	default:
		log.Fatalf("unknown role %q", role)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		log.Fatal("--tls-cert and --tls-key go together")
	}
	errs := make(chan error, 2)
	if *tlsCert != "" {
		tsrv := &http.Server{Addr: *tlsListen, Handler: logged(mux), ReadHeaderTimeout: 5 * time.Second}
		// One request per connection: the runtime opens its connections to calls' hosts when it
		// starts (warm-up), possibly before kube-router enforces the new pod's NetworkPolicy, and
		// a connection that is kept alive would carry on past the policy the suite checks.
		tsrv.SetKeepAlivesEnabled(false)
		log.Printf("%s listening on %s (HTTPS)", role, *tlsListen)
		go func() { errs <- tsrv.ListenAndServeTLS(*tlsCert, *tlsKey) }()
	}
	srv := &http.Server{Addr: *listen, Handler: logged(mux), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("%s listening on %s", role, *listen)
	go func() { errs <- srv.ListenAndServe() }()
	log.Fatal(<-errs)
}

// dial answers 200 when a TCP connection to ?addr= opens within 3 s, else 502 with the error.
func dial(w http.ResponseWriter, r *http.Request) {
	conn, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 3*time.Second)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	_ = conn.Close()
	writeJSON(w, http.StatusOK, map[string]string{"connected": conn.RemoteAddr().String()})
}

func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		if r.URL.Path != "/healthz" {
			log.Printf("%s %s -> %d", r.Method, r.URL.RequestURI(), rec.status)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func bearerOK(r *http.Request, token string) bool {
	return token == "" || equal(r.Header.Get("Authorization"), "Bearer "+token)
}

// record is one request a service received, for the e2e client to inspect.
type record struct {
	Time    time.Time         `json:"time"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query,omitempty"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body,omitempty"`
	TLS     bool              `json:"tls"`
}

type recorder struct {
	mu   sync.Mutex
	recs []record
}

func (rc *recorder) add(r *http.Request, body []byte) {
	h := map[string]string{}
	for k, v := range r.Header {
		h[strings.ToLower(k)] = strings.Join(v, ",")
	}
	rec := record{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: h, TLS: r.TLS != nil}
	if json.Valid(body) {
		rec.Body = body
	} else if len(body) > 0 {
		rec.Body, _ = json.Marshal(string(body))
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.recs) >= maxRecords {
		rc.recs = rc.recs[1:]
	}
	rc.recs = append(rc.recs, rec)
}

func (rc *recorder) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Method == http.MethodDelete {
		rc.recs = nil
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, 200, rc.recs)
}

// --- approvals ---

type approvals struct {
	token       string
	preapproved map[string]bool
	mu          sync.Mutex
	status      map[string]string // lower-cased email -> pending | approved | denied
	next        int
	recorder
}

func newApprovals(token, domains string) *approvals {
	a := &approvals{token: token, preapproved: map[string]bool{}, status: map[string]string{}, next: 1000}
	for _, d := range strings.Split(domains, ",") {
		if d = strings.TrimSpace(strings.ToLower(d)); d != "" {
			a.preapproved[d] = true
		}
	}
	return a
}

func (a *approvals) register(mux *http.ServeMux) {
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !bearerOK(r, a.token) {
				writeJSON(w, 401, map[string]string{"error": "unauthorized"})
				return
			}
			h(w, r)
		}
	}
	// Status of the access request for ?email=: approved, pending, denied or none.
	mux.HandleFunc("GET /api/v1/access-requests/status", auth(func(w http.ResponseWriter, r *http.Request) {
		a.add(r, nil)
		email := strings.ToLower(r.URL.Query().Get("email"))
		if email == "" {
			writeJSON(w, 400, map[string]string{"error": "email is required"})
			return
		}
		a.mu.Lock()
		st, ok := a.status[email]
		a.mu.Unlock()
		if !ok {
			st = "none"
		}
		writeJSON(w, 200, map[string]string{"status": st})
	}))
	// Submit an access request: approved at once for a pre-approved domain, pending when one
	// already waits, otherwise a new pending request ("submitted").
	mux.HandleFunc("POST /api/v1/access-requests", auth(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		a.add(r, body)
		var req struct {
			Email string `json:"email"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Email == "" {
			writeJSON(w, 400, map[string]string{"error": "a JSON body with email is required"})
			return
		}
		email := strings.ToLower(req.Email)
		domain := email[strings.LastIndex(email, "@")+1:]
		a.mu.Lock()
		defer a.mu.Unlock()
		switch st := a.status[email]; {
		case st == "approved" || st == "pending":
			writeJSON(w, 200, map[string]string{"status": st})
		case a.preapproved[domain]:
			a.status[email] = "approved"
			writeJSON(w, 200, map[string]string{"status": "approved"})
		default:
			a.next++
			a.status[email] = "pending"
			writeJSON(w, 201, map[string]string{"status": "submitted", "id": fmt.Sprintf("REQ-%d", a.next)})
		}
	}))
	// The approver's decision: {"email": ..., "status": "approved" | "denied" | "pending"}.
	mux.HandleFunc("POST /admin/decisions", auth(func(w http.ResponseWriter, r *http.Request) {
		var d struct{ Email, Status string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&d); err != nil || d.Email == "" {
			writeJSON(w, 400, map[string]string{"error": "email and status are required"})
			return
		}
		a.mu.Lock()
		a.status[strings.ToLower(d.Email)] = d.Status
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /admin/requests", auth(a.serve))
}

// --- verify ---

type verify struct {
	username, password, apiKey string
	recorder
}

func newVerify(username, password, apiKey string) *verify {
	return &verify{username: username, password: password, apiKey: apiKey}
}

func (v *verify) register(mux *http.ServeMux) {
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || !equal(u, v.username) || !equal(p, v.password) {
				w.Header().Set("WWW-Authenticate", `Basic realm="verify"`)
				writeJSON(w, 401, map[string]string{"error": "unauthorized"})
				return
			}
			h(w, r)
		}
	}
	// A check passes unless the surname says otherwise: "Expired" -> document_expired,
	// "Nomatch" -> no_match, "Outage" -> 503 (the service is down).
	mux.HandleFunc("POST /v2/checks", auth(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		v.add(r, body)
		if v.apiKey != "" && !equal(r.Header.Get("X-Api-Key"), v.apiKey) {
			writeJSON(w, 401, map[string]string{"error": "X-Api-Key is missing or wrong"})
			return
		}
		if r.Header.Get("X-Client") == "" {
			writeJSON(w, 400, map[string]string{"error": "X-Client header is required"})
			return
		}
		var req struct {
			GivenName, Surname, Email, Country, DateOfBirth, Reference string
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeJSON(w, 400, map[string]string{"error": "bad JSON"})
			return
		}
		switch strings.ToLower(req.Surname) {
		case "expired":
			writeJSON(w, 200, map[string]any{"verified": false, "reason": "document_expired"})
		case "nomatch":
			writeJSON(w, 200, map[string]any{"verified": false, "reason": "no_match"})
		case "outage":
			writeJSON(w, 503, map[string]any{"error": "maintenance"})
		default:
			writeJSON(w, 200, map[string]any{"verified": true, "checkId": fmt.Sprintf("chk-%d", time.Now().UnixNano())})
		}
	}))
	mux.HandleFunc("GET /admin/checks", auth(v.serve))
}

// --- sink ---

type sink struct {
	token   string
	members map[string]json.RawMessage // objectId -> member record
	recorder
}

// newSink reads members, a JSON object of objectId -> the record the member look-up answers.
func newSink(token, members string) (*sink, error) {
	s := &sink{token: token, members: map[string]json.RawMessage{}}
	if members != "" {
		if err := json.Unmarshal([]byte(members), &s.members); err != nil {
			return nil, fmt.Errorf("MEMBERS: %w", err)
		}
	}
	return s, nil
}

func (s *sink) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/events", s.serve)
	mux.HandleFunc("DELETE /admin/events", s.serve)
	// A loyalty system's member look-up: GET ?objectId= (a GET call's body expression becomes
	// its query parameters), recorded like an event; 200 with the member's record, 404 for
	// anyone else.
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		s.add(r, nil)
		m, ok := s.members[r.URL.Query().Get("objectId")]
		if !ok {
			writeJSON(w, 404, map[string]string{"error": "no such member"})
			return
		}
		writeJSON(w, 200, m)
	})
	// Every other POST is an event delivery. /cloudevents needs the token when one is set.
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cloudevents" && !bearerOK(r, s.token) {
			writeJSON(w, 401, map[string]string{"error": "unauthorized"})
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.add(r, body)
		w.WriteHeader(http.StatusAccepted)
	})
}
