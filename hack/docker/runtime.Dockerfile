# The shared runtime image every connector Deployment runs, for users with Docker:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -f hack/docker/runtime.Dockerfile -t apiconnector-runtime:dev .
# Without Docker, `make images` builds the same layout (hack/images); `make release` for two
# platforms with SBOMs.
# Base images are pinned by digest, so a rebuild uses the images that were reviewed; check a
# digest with `crane digest <image>:<tag>` when updating. The builder fetches go.mod's toolchain
# line through the Go module proxy (checked against the checksum database): the official golang
# images set GOTOOLCHAIN=local, which would build with the image's own Go.
FROM golang:1.26.9@sha256:f1f0bcc2c524a3ced375fcb4d1ecb7aa371aa7070e112599aaca45cc02d0101b AS build
ENV GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version the binary reports (--version, apiconnector_build_info).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/apiconnector/operator/internal/version.version=${VERSION}" -o /out/apiconnector-runtime ./runtime/cmd/apiconnector-runtime

# distroless static carries Debian's CA bundle at /etc/ssl/certs/ca-certificates.crt, which the
# binary's outbound HTTPS calls verify against (make images adds Mozilla's roots at the same path).
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/apiconnector-runtime /apiconnector-runtime
USER 65532:65532
ENTRYPOINT ["/apiconnector-runtime"]
