// Builds the container images the e2e cluster runs (hack/cluster), without Docker: each is one
// static binary on an empty base (plus a CA bundle for the runtime and the operator), written as
// a docker-archive tarball that `ctr -n k8s.io images import` reads. Its own module so
// go-containerregistry and the CA bundle module stay out of the operator's dependencies.
module github.com/apiconnector/operator/hack/images

go 1.26.0

toolchain go1.26.10

require (
	github.com/google/go-containerregistry v0.22.1
	golang.org/x/crypto/x509roots/fallback v0.0.0-20261030153154-30a33513ff6d
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
