//go:build tools

// Package traefik pins the ingress controller the e2e cluster runs on the host.
package traefik

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
