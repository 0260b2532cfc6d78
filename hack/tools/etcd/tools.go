//go:build tools

// Package etcd pins the etcd server the tests build from source.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
