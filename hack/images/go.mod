// Builds the container images the e2e cluster runs (hack/cluster), without Docker: each is one
// static binary on an empty base, written as a docker-archive tarball that
// `ctr -n k8s.io images import` reads. Its own module so go-containerregistry stays out of the
// operator's dependencies.
module github.com/apiconnector/operator/hack/images

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
