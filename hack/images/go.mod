// Builds the container images without Docker: each is one static binary on an empty base (plus a
// CA bundle for the runtime and the operator). For the e2e cluster (hack/cluster) as docker-archive
// tarballs that `ctr -n k8s.io images import` reads; for a release as multi-platform OCI image
// layouts with SPDX SBOMs attached as referrers, and pushed to a registry. Its own module so
// go-containerregistry, the SPDX library and the CA bundle module stay out of the operator's
// dependencies.
module github.com/apiconnector/operator/hack/images

go 1.26.0

toolchain go1.26.10

require (
	github.com/google/go-containerregistry v0.22.1
	github.com/spdx/tools-golang v0.5.7
	golang.org/x/crypto/x509roots/fallback v0.0.0-20261030153154-30a33513ff6d
)

require (
	github.com/anchore/go-struct-converter v0.1.0 // indirect
	github.com/docker/cli v29.7.2+incompatible // indirect
	github.com/docker/docker-credential-helpers v0.9.3 // indirect
	github.com/klauspost/compress v1.20.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/sirupsen/logrus v1.9.4 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	gotest.tools/v3 v3.5.2 // indirect
)
