package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// EventListener is an authenticationEventListener.
type EventListener struct {
	ID string
	// ODataType is the listener type, e.g. "#microsoft.graph.onTokenIssuanceStartListener".
	ODataType string
	// HandlerODataType is the handler type, e.g.
	// "#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler".
	HandlerODataType string
	// ExtensionID is the ID of the handler's custom authentication extension.
	ExtensionID string
	// AppIDs are conditions.applications.includeApplications[].appId.
	AppIDs []string
}

type wireListener struct {
	ODataType  string          `json:"@odata.type,omitempty"`
	ID         string          `json:"id,omitempty"`
	Conditions *wireConditions `json:"conditions,omitempty"`
	Handler    *wireHandler    `json:"handler,omitempty"`
}

type wireConditions struct {
	Applications *struct {
		IncludeApplications []wireAppCondition `json:"includeApplications"`
	} `json:"applications,omitempty"`
}

type wireAppCondition struct {
	AppID string `json:"appId"`
}

type wireHandler struct {
	ODataType       string `json:"@odata.type"`
	CustomExtension *struct {
		ID string `json:"id"`
	} `json:"customExtension,omitempty"`
}

func (l EventListener) wire() wireListener {
	w := wireListener{ODataType: l.ODataType, Conditions: &wireConditions{}}
	w.Conditions.Applications = &struct {
		IncludeApplications []wireAppCondition `json:"includeApplications"`
	}{IncludeApplications: []wireAppCondition{}}
	for _, a := range l.AppIDs {
		w.Conditions.Applications.IncludeApplications = append(w.Conditions.Applications.IncludeApplications, wireAppCondition{AppID: a})
	}
	if l.HandlerODataType != "" || l.ExtensionID != "" {
		w.Handler = &wireHandler{ODataType: l.HandlerODataType}
		if l.ExtensionID != "" {
			w.Handler.CustomExtension = &struct {
				ID string `json:"id"`
			}{ID: l.ExtensionID}
		}
	}
	return w
}

func (w wireListener) listener() EventListener {
	l := EventListener{ID: w.ID, ODataType: w.ODataType}
	if w.Conditions != nil && w.Conditions.Applications != nil {
		for _, a := range w.Conditions.Applications.IncludeApplications {
			l.AppIDs = append(l.AppIDs, a.AppID)
		}
	}
	if w.Handler != nil {
		l.HandlerODataType = w.Handler.ODataType
		if w.Handler.CustomExtension != nil {
			l.ExtensionID = w.Handler.CustomExtension.ID
		}
	}
	return l
}

// CreateEventListener creates an authentication event listener; ODataType is
// required.
func (c *Client) CreateEventListener(ctx context.Context, l EventListener) (EventListener, error) {
	if l.ODataType == "" {
		return EventListener{}, errors.New("graph: create authentication event listener: @odata.type is required")
	}
	var out wireListener
	if err := c.do(ctx, http.MethodPost, listenersVersion, eventListenersPath, "", l.wire(), &out); err != nil {
		return EventListener{}, err
	}
	return out.listener(), nil
}

// GetEventListener reads an authentication event listener.
func (c *Client) GetEventListener(ctx context.Context, id string) (EventListener, error) {
	if id == "" {
		return EventListener{}, errors.New("graph: get authentication event listener: empty ID")
	}
	var out wireListener
	if err := c.do(ctx, http.MethodGet, listenersVersion, eventListenersPath+"/"+seg(id), "", nil, &out); err != nil {
		return EventListener{}, err
	}
	return out.listener(), nil
}

// ListEventListeners reads every authentication event listener of the
// tenant, following Graph's paging (at most 50 pages).
func (c *Client) ListEventListeners(ctx context.Context) ([]EventListener, error) {
	return list(ctx, c, listenersVersion, eventListenersPath, wireListener.listener)
}

// UpdateEventListener replaces the conditions and handler of an
// authentication event listener (PATCH); ODataType must be the listener's type.
func (c *Client) UpdateEventListener(ctx context.Context, id string, l EventListener) error {
	if id == "" || l.ODataType == "" {
		return errors.New("graph: update authentication event listener: ID and @odata.type are required")
	}
	return c.do(ctx, http.MethodPatch, listenersVersion, eventListenersPath+"/"+seg(id), "", l.wire(), nil)
}

// DeleteEventListener deletes an authentication event listener; one that does
// not exist counts as deleted.
func (c *Client) DeleteEventListener(ctx context.Context, id string) error {
	return c.deleteObject(ctx, listenersVersion, eventListenersPath, id)
}

// Application is the part of an application registration the operator reads.
type Application struct {
	// ID is the object ID; AppID the application (client) ID.
	ID, AppID, DisplayName string
	IdentifierURIs         []string
}

// ApplicationByAppID reads the application whose application (client) ID is appID.
func (c *Client) ApplicationByAppID(ctx context.Context, appID string) (Application, error) {
	if appID == "" {
		return Application{}, errors.New("graph: get application: empty appId")
	}
	var out struct {
		ID             string   `json:"id"`
		AppID          string   `json:"appId"`
		DisplayName    string   `json:"displayName"`
		IdentifierURIs []string `json:"identifierUris"`
	}
	key := "(appId='" + seg(strings.ReplaceAll(appID, "'", "''")) + "')"
	if err := c.do(ctx, http.MethodGet, applicationsVersion, "/applications"+key, "", nil, &out); err != nil {
		return Application{}, err
	}
	return Application(out), nil
}
