//go:build tools

// Package kube pins the Kubernetes components the tests and the local cluster build from source.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
