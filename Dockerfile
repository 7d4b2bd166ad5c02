# syntax=docker/dockerfile:1
# Build: make docker (or docker build --build-arg VERSION=... .)
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
# The same static build as `make build`.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w \
        -X github.com/prometheus/common/version.Version=${VERSION} \
        -X github.com/prometheus/common/version.Revision=${REVISION} \
        -X github.com/prometheus/common/version.Branch=${BRANCH} \
        -X github.com/prometheus/common/version.BuildUser=docker" \
      -o /out/lbprobe ./cmd/lbprobe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lbprobe /bin/lbprobe
USER 65532:65532
EXPOSE 9884
ENTRYPOINT ["/bin/lbprobe"]
