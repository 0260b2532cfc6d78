# The operator image, for users with Docker:
#   docker build -f hack/docker/operator.Dockerfile -t apiconnector-operator:dev .
# Without Docker, `make images` builds the same layout as an OCI tarball (hack/images).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/manager .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
