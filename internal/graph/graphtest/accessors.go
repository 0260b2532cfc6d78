package graphtest

import (
	"slices"
	"strings"

	"github.com/apiconnector/operator/internal/graph"
)

// AddUserFlow seeds an empty user flow of kind (b2x or b2c).
func (s *Server) AddUserFlow(kind graph.UserFlowKind, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.flows[kind] == nil {
		s.state.flows[kind] = map[string]map[string]string{}
	}
	s.state.flows[kind][id] = map[string]string{}
}

// AddApplication seeds an application registration and returns its object ID.
func (s *Server) AddApplication(appID string, identifierURIs ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &graph.Application{ID: newID(), AppID: appID, DisplayName: "app " + appID, IdentifierURIs: slices.Clone(identifierURIs)}
	s.state.applications[appID] = a
	return a.ID
}

// APIConnectors returns the stored API connectors, passwords included, sorted
// by ID. Certificate is the most recently uploaded certificate.
func (s *Server) APIConnectors() []graph.APIConnector {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []graph.APIConnector
	for _, c := range s.state.connectors {
		a := graph.APIConnector{ID: c.ID, DisplayName: c.DisplayName, TargetURL: c.TargetURL}
		if c.Basic != nil {
			b := *c.Basic
			a.Basic = &b
		}
		for _, sc := range c.Certs {
			a.CertificateThumbprints = append(a.CertificateThumbprints, sc.Thumbprint)
			a.Certificate = &graph.PKCS12Certificate{PKCS12: slices.Clone(sc.PKCS12), Password: sc.Password}
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b graph.APIConnector) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// CustomExtensions returns the stored custom authentication extensions, sorted by ID.
func (s *Server) CustomExtensions() []graph.CustomExtension {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []graph.CustomExtension
	for _, e := range s.state.extensions {
		out = append(out, e.public())
	}
	slices.SortFunc(out, func(a, b graph.CustomExtension) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// EventListeners returns the stored authentication event listeners, sorted by ID.
func (s *Server) EventListeners() []graph.EventListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []graph.EventListener
	for _, l := range s.state.listeners {
		out = append(out, l.public())
	}
	slices.SortFunc(out, func(a, b graph.EventListener) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// UserFlowConnector returns the ID of the API connector attached to step of a
// user flow, or "".
func (s *Server) UserFlowConnector(kind graph.UserFlowKind, flowID, step string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.flows[kind][flowID][step]
}

// SetUserFlowConnector attaches (or, with "", detaches) a connector as a
// portal edit would.
func (s *Server) SetUserFlowConnector(kind graph.UserFlowKind, flowID, step, connectorID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.state.flows[kind][flowID]; f != nil {
		if connectorID == "" {
			delete(f, step)
		} else {
			f[step] = connectorID
		}
	}
}

// SetAPIConnectorTargetURL changes a connector's target URL as a portal edit
// would; it reports whether the connector exists.
func (s *Server) SetAPIConnectorTargetURL(id, targetURL string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.state.connectors[id]
	if c != nil {
		c.TargetURL = targetURL
	}
	return c != nil
}

// SetAPIConnectorBasicPassword changes a connector's basic authentication
// password as a portal edit would; it reports whether that was possible.
func (s *Server) SetAPIConnectorBasicPassword(id, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.state.connectors[id]
	if c == nil || c.Basic == nil {
		return false
	}
	c.Basic.Password = password
	return true
}

// SetCustomExtensionTargetURL changes an extension's endpoint as a portal edit
// would; it reports whether the extension exists.
func (s *Server) SetCustomExtensionTargetURL(id, targetURL string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.state.extensions[id]
	if e != nil {
		e.EndpointConfiguration.TargetURL = targetURL
	}
	return e != nil
}

// SetEventListenerAppIDs replaces a listener's application condition as a
// portal edit would; it reports whether the listener exists.
func (s *Server) SetEventListenerAppIDs(id string, appIDs ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.state.listeners[id]
	if l == nil {
		return false
	}
	l.Conditions = &conditions{Applications: &appConditions{IncludeApplications: []appCondition{}}}
	for _, a := range appIDs {
		l.Conditions.Applications.IncludeApplications = append(l.Conditions.Applications.IncludeApplications,
			appCondition{ODataType: "#microsoft.graph.authenticationConditionApplication", AppID: a})
	}
	return true
}

// DeleteObject deletes any object (connector, extension, listener) by ID as a
// portal edit would; it reports whether one existed.
func (s *Server) DeleteObject(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(id)
}
