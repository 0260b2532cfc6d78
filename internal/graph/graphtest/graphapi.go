package graphtest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/apiconnector/operator/internal/graph"
)

func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	if ok, msg := s.authorized(r); !ok {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return
	}
	s.mu.Lock()
	if s.throttleN > 0 {
		s.throttleN--
		d := s.throttleD
		s.mu.Unlock()
		secs := int((d + 999_999_999) / 1_000_000_000)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		graphError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests. Please retry after "+strconv.Itoa(secs)+" seconds.")
		return
	}
	if s.failN > 0 {
		s.failN--
		code := s.failCode
		s.mu.Unlock()
		graphError(w, code, "serviceNotAvailable", "The service is temporarily unavailable.")
		return
	}
	s.mu.Unlock()

	version, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		graphError(w, http.StatusBadRequest, "BadRequest", "Could not read the request body.")
		return
	}
	s.mu.Lock()
	status, out, err := s.route(r.Method, version, "/"+rest, r.URL.Query(), body)
	s.mu.Unlock()
	var br badRequest
	switch {
	case errors.As(err, &br):
		graphError(w, http.StatusBadRequest, br.code, br.msg)
	case errors.Is(err, errNotFound):
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource '"+strings.TrimPrefix(rest, "identity/")+"' does not exist or one of its queried reference-property objects are not present.")
	case err != nil:
		graphError(w, status, "BadRequest", err.Error())
	case out == nil:
		w.WriteHeader(status)
	default:
		if m, ok := out.(map[string]any); ok {
			m["@odata.context"] = s.srv.URL + "/" + version + "/$metadata#" + strings.Split(rest, "/")[0]
		}
		writeJSON(w, status, out)
	}
}

var errMethod = errors.New("method not allowed")

// route serves one Graph call; s.mu is held.
func (s *Server) route(method, version, path string, q url.Values, body []byte) (int, any, error) {
	st := &s.state
	p := strings.Split(strings.Trim(path, "/"), "/")
	notAllowed := func() (int, any, error) {
		return http.StatusMethodNotAllowed, nil, errors.New("The HTTP method '" + method + "' is not supported on this resource.")
	}
	switch {
	case len(p) == 2 && p[0] == "identity" && method == http.MethodGet &&
		(p[1] == "apiConnectors" || p[1] == "customAuthenticationExtensions" || p[1] == "authenticationEventListeners"):
		return s.list(version, p[1], q)
	case len(p) >= 2 && p[0] == "identity" && p[1] == "apiConnectors":
		return s.apiConnectors(method, p[2:], body)
	case len(p) >= 2 && p[0] == "identity" && (p[1] == "b2xUserFlows" || p[1] == "b2cUserFlows"):
		kind := graph.UserFlowB2X
		if p[1] == "b2cUserFlows" {
			kind = graph.UserFlowB2C
			if version != "beta" {
				return 0, nil, badRequest{"BadRequest", "Resource not found for the segment 'b2cUserFlows'."}
			}
		}
		return s.userFlows(method, version, kind, p[2:], q, body)
	case len(p) >= 2 && p[0] == "identity" && p[1] == "customAuthenticationExtensions":
		return s.extensions(method, p[2:], body)
	case len(p) >= 2 && p[0] == "identity" && p[1] == "authenticationEventListeners":
		return s.listeners(method, p[2:], body)
	case len(p) == 1 && strings.HasPrefix(p[0], "applications(appId='") && strings.HasSuffix(p[0], "')"):
		if method != http.MethodGet {
			return notAllowed()
		}
		appID := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(p[0], "applications(appId='"), "')"), "''", "'")
		a := st.applications[appID]
		if a == nil {
			return 0, nil, errNotFound
		}
		return http.StatusOK, map[string]any{"id": a.ID, "appId": a.AppID, "displayName": a.DisplayName, "identifierUris": a.IdentifierURIs}, nil
	}
	return 0, nil, badRequest{"BadRequest", "Resource not found for the segment '" + p[len(p)-1] + "'."}
}

// page is one page of a list answer.
type page struct {
	Context  string `json:"@odata.context"`
	NextLink string `json:"@odata.nextLink,omitempty"`
	Value    []any  `json:"value"`
}

// list serves GET /identity/{collection}: the objects sorted by ID, as GET
// renders them (passwords masked), s.pageSize a page. The $skiptoken of the
// nextLink is the last ID of the page, encoded, so that a page stays right
// when objects are created or deleted meanwhile. Query options other than
// $skiptoken are refused rather than ignored.
func (s *Server) list(version, collection string, q url.Values) (int, any, error) {
	for k := range q {
		if k != "$skiptoken" {
			return 0, nil, badRequest{"BadRequest", "Query option '" + k + "' is not supported by the stand-in."}
		}
	}
	after := ""
	if tok := q.Get("$skiptoken"); q.Has("$skiptoken") {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return 0, nil, badRequest{"BadRequest", "Invalid $skiptoken."}
		}
		after = string(b)
	}
	st := &s.state
	items := map[string]any{}
	switch collection {
	case "apiConnectors":
		for id, c := range st.connectors {
			items[id] = c.wire()
		}
	case "customAuthenticationExtensions":
		for id, e := range st.extensions {
			items[id] = e
		}
	case "authenticationEventListeners":
		for id, l := range st.listeners {
			items[id] = l
		}
	}
	ids := slices.Sorted(maps.Keys(items))
	start, _ := slices.BinarySearch(ids, after)
	if after != "" && start < len(ids) && ids[start] == after {
		start++
	}
	root := s.srv.URL + "/" + version + "/"
	out := page{Context: root + "$metadata#identity/" + collection, Value: []any{}}
	end := min(len(ids), start+s.pageSize)
	for _, id := range ids[start:end] {
		out.Value = append(out.Value, items[id])
	}
	if end < len(ids) {
		out.NextLink = root + "identity/" + collection + "?$skiptoken=" + base64.RawURLEncoding.EncodeToString([]byte(ids[end-1]))
	}
	return http.StatusOK, out, nil
}

// get returns a stored object, or errNotFound while NotFoundAfterCreate is
// in effect for a fresh object.
func (s *Server) readable(id string, exists bool) error {
	if !exists {
		return errNotFound
	}
	if s.state.fresh[id] {
		if s.notFoundN > 0 {
			s.notFoundN--
			return errNotFound
		}
		delete(s.state.fresh, id)
	}
	return nil
}

func (s *Server) apiConnectors(method string, p []string, body []byte) (int, any, error) {
	st := &s.state
	switch {
	case len(p) == 0 && method == http.MethodPost:
		var w wireConnector
		if err := decodeStrict(body, &w); err != nil {
			return 0, nil, err
		}
		c := &connector{ID: newID()}
		if err := c.apply(w, true); err != nil {
			return 0, nil, err
		}
		st.connectors[c.ID] = c
		st.fresh[c.ID] = true
		return http.StatusCreated, c.wire(), nil
	case len(p) == 1 || (len(p) == 2 && p[1] == "uploadClientCertificate"):
		c := st.connectors[p[0]]
		if len(p) == 2 {
			if method != http.MethodPost {
				return http.StatusMethodNotAllowed, nil, errMethod
			}
			if c == nil {
				return 0, nil, errNotFound
			}
			var in struct {
				PKCS12Value string `json:"pkcs12Value"`
				Password    string `json:"password"`
			}
			if err := decodeStrict(body, &in); err != nil {
				return 0, nil, err
			}
			sc, err := decodeCert(in.PKCS12Value, in.Password)
			if err != nil {
				return 0, nil, err
			}
			c.Basic = nil
			c.Certs = append(c.Certs, sc)
			return http.StatusOK, c.wire(), nil
		}
		switch method {
		case http.MethodGet:
			if err := s.readable(p[0], c != nil); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, c.wire(), nil
		case http.MethodPatch:
			if c == nil {
				return 0, nil, errNotFound
			}
			var w wireConnector
			if err := decodeStrict(body, &w); err != nil {
				return 0, nil, err
			}
			next := *c
			if err := next.apply(w, false); err != nil {
				return 0, nil, err
			}
			*c = next
			return http.StatusNoContent, nil, nil
		case http.MethodDelete:
			if c == nil {
				return 0, nil, errNotFound
			}
			s.deleteLocked(c.ID)
			return http.StatusNoContent, nil, nil
		}
	}
	return http.StatusMethodNotAllowed, nil, errMethod
}

func (s *Server) userFlows(method, version string, kind graph.UserFlowKind, p []string, q url.Values, body []byte) (int, any, error) {
	st := &s.state
	if len(p) < 2 || p[1] != "apiConnectorConfiguration" {
		return 0, nil, badRequest{"BadRequest", "Unsupported user flow request."}
	}
	flow := st.flows[kind][p[0]]
	if flow == nil {
		return 0, nil, errNotFound
	}
	switch {
	case len(p) == 2 && method == http.MethodGet:
		out := map[string]any{}
		if x := q.Get("$expand"); x != "" {
			for _, step := range strings.Split(x, ",") {
				if !slices.Contains(steps[kind], step) {
					return 0, nil, badRequest{"BadRequest", "Could not find a property named '" + step + "' on type 'microsoft.graph.userFlowApiConnectorConfiguration'."}
				}
				if c := st.connectors[flow[step]]; c != nil {
					out[step] = c.wire()
				} else {
					out[step] = nil
				}
			}
		}
		return http.StatusOK, out, nil
	case len(p) == 4 && p[3] == "$ref" && method == http.MethodPut:
		step := p[2]
		if !slices.Contains(steps[kind], step) {
			return 0, nil, badRequest{"BadRequest", "Resource not found for the segment '" + step + "'."}
		}
		var ref map[string]string
		if err := json.Unmarshal(body, &ref); err != nil {
			return 0, nil, badRequest{"BadRequest", "Invalid request body."}
		}
		id, ok := ref["@odata.id"]
		if len(ref) == 0 {
			delete(flow, step)
			return http.StatusNoContent, nil, nil
		}
		prefix := s.srv.URL + "/" + version + "/identity/apiConnectors/"
		if !ok || len(ref) != 1 || !strings.HasPrefix(id, prefix) {
			return 0, nil, badRequest{"BadRequest", "Invalid @odata.id; expected " + prefix + "{id}."}
		}
		cid := strings.TrimPrefix(id, prefix)
		if st.connectors[cid] == nil {
			return 0, nil, errNotFound
		}
		flow[step] = cid
		return http.StatusNoContent, nil, nil
	}
	return http.StatusMethodNotAllowed, nil, errMethod
}

func (s *Server) extensions(method string, p []string, body []byte) (int, any, error) {
	st := &s.state
	switch {
	case len(p) == 0 && method == http.MethodPost:
		var e extension
		if err := decodeStrict(body, &e); err != nil {
			return 0, nil, err
		}
		if err := e.validate(); err != nil {
			return 0, nil, err
		}
		e.ID = newID()
		st.extensions[e.ID] = &e
		st.fresh[e.ID] = true
		return http.StatusCreated, e, nil
	case len(p) == 2 && p[1] == "validateAuthenticationConfiguration" && method == http.MethodPost:
		e := st.extensions[p[0]]
		if e == nil {
			return 0, nil, errNotFound
		}
		return http.StatusOK, st.validateAuth(e), nil
	case len(p) == 1:
		e := st.extensions[p[0]]
		switch method {
		case http.MethodGet:
			if err := s.readable(p[0], e != nil); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, e, nil
		case http.MethodPatch:
			if e == nil {
				return 0, nil, errNotFound
			}
			next := *e
			next.ClaimsForTokenConfiguration = nil // a PATCH replaces collections
			if err := decodeStrict(body, &next); err != nil {
				return 0, nil, err
			}
			if next.ODataType != e.ODataType {
				return 0, nil, badRequest{"BadRequest", "The @odata.type of a custom extension cannot change."}
			}
			if len(next.ClaimsForTokenConfiguration) == 0 {
				next.ClaimsForTokenConfiguration = e.ClaimsForTokenConfiguration
			}
			next.ID = e.ID
			if err := next.validate(); err != nil {
				return 0, nil, err
			}
			*e = next
			return http.StatusNoContent, nil, nil
		case http.MethodDelete:
			if e == nil {
				return 0, nil, errNotFound
			}
			s.deleteLocked(e.ID)
			return http.StatusNoContent, nil, nil
		}
	}
	return http.StatusMethodNotAllowed, nil, errMethod
}

func (s *Server) listeners(method string, p []string, body []byte) (int, any, error) {
	st := &s.state
	switch {
	case len(p) == 0 && method == http.MethodPost:
		var l listener
		if err := decodeStrict(body, &l); err != nil {
			return 0, nil, err
		}
		if err := st.validateListener(&l); err != nil {
			return 0, nil, err
		}
		l.ID = newID()
		st.listeners[l.ID] = &l
		st.fresh[l.ID] = true
		return http.StatusCreated, l, nil
	case len(p) == 1:
		l := st.listeners[p[0]]
		switch method {
		case http.MethodGet:
			if err := s.readable(p[0], l != nil); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, l, nil
		case http.MethodPatch:
			if l == nil {
				return 0, nil, errNotFound
			}
			next := *l
			if err := decodeStrict(body, &next); err != nil {
				return 0, nil, err
			}
			if next.ODataType != l.ODataType {
				return 0, nil, badRequest{"BadRequest", "The @odata.type of a listener cannot change."}
			}
			next.ID = l.ID
			if err := st.validateListener(&next); err != nil {
				return 0, nil, err
			}
			*l = next
			return http.StatusNoContent, nil, nil
		case http.MethodDelete:
			if l == nil {
				return 0, nil, errNotFound
			}
			s.deleteLocked(l.ID)
			return http.StatusNoContent, nil, nil
		}
	}
	return http.StatusMethodNotAllowed, nil, errMethod
}

// deleteLocked removes any object by ID and the user flow references to it.
func (s *Server) deleteLocked(id string) bool {
	st := &s.state
	_, c := st.connectors[id]
	_, e := st.extensions[id]
	_, l := st.listeners[id]
	delete(st.connectors, id)
	delete(st.extensions, id)
	delete(st.listeners, id)
	delete(st.fresh, id)
	for _, flows := range st.flows {
		for _, flow := range flows {
			for step, cid := range flow {
				if cid == id {
					delete(flow, step)
				}
			}
		}
	}
	return c || e || l
}
