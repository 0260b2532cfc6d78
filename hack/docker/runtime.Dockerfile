# The shared runtime image every connector Deployment runs, for users with Docker:
#   docker build -f hack/docker/runtime.Dockerfile -t apiconnector-runtime:dev .
# Without Docker, `make images` builds the same layout as an OCI tarball (hack/images).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/apiconnector-runtime ./runtime/cmd/apiconnector-runtime

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/apiconnector-runtime /apiconnector-runtime
USER 65532:65532
ENTRYPOINT ["/apiconnector-runtime"]
