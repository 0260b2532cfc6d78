//go:build tools

// Package kuberouter pins the NetworkPolicy enforcer the e2e cluster runs on its node (only its
// firewall controller). Test tooling only: never part of an image or release.
package kuberouter

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
