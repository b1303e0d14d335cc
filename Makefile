# Common tasks. `make run` starts the server on the embedded SQLite default;
# `make test` runs the whole test suite.

GO ?= go

.PHONY: run test build generate bench fmt docs

run:
	$(GO) run ./cmd/ipa serve

test:
	./scripts/test.sh

# Stamped like a release (version, commit, build time), so `ipa version`
# names them even where Go's own VCS stamping is off (-buildvcs=false).
build:
	$(GO) build -ldflags "$(STAMP)" -o bin/ipa ./cmd/ipa

# Regenerates the GraphQL server (gqlgen) and the plugin protocol (protoc).
generate:
	$(GO) generate ./...

# Regenerates the references under docs/reference (GraphQL API from the
# schema, metrics from the server's registry, CLI from its commands);
# TestReferenceDocsCurrent fails in `make test` when they are out of date.
docs:
	IPA_WRITE_DOCS=1 $(GO) test -count=1 -run '^TestReferenceDocsCurrent$$' ./cmd/ipa/

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/ ./internal/httpserver/ ./internal/supervisor/

fmt:
	gofmt -w $$(git ls-files '*.go')

# Release archives: static binaries (no cgo; the SQLite driver is pure Go)
# for linux and darwin on amd64 and arm64, in dist/ with a SHA256SUMS file.
# On darwin a server restart does not adopt running pods (no pidfd or
# /proc): their pods are treated as gone; see docs/guides/operations.md.
# VERSION defaults to the nearest tag, or "dev".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
STAMP = -X github.com/ipa-dev/ipa/internal/buildinfo.version=$(VERSION) \
	-X github.com/ipa-dev/ipa/internal/buildinfo.commit=$(COMMIT) \
	-X github.com/ipa-dev/ipa/internal/buildinfo.buildTime=$(BUILD_TIME)
LDFLAGS = -s -w $(STAMP)

# DIST: where the archives go (emptied first).
DIST ?= dist
.PHONY: dist image
dist:
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; name=ipa_$(VERSION)_$${os}_$${arch}; \
		mkdir -p $(DIST)/$$name; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/$$name/ipa ./cmd/ipa; \
		cp -R LICENSE README.md docs $(DIST)/$$name/; \
		tar -C $(DIST) -czf $(DIST)/$$name.tar.gz $$name; \
	done
	cd $(DIST) && sha256sum *.tar.gz > SHA256SUMS

# The container image (see Containerfile): the static linux binary copied
# into an empty image.
IMAGE ?= ipa:$(VERSION)
image:
	rm -rf dist/image && mkdir -p dist/image/tmp dist/image/data
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/image/ipa ./cmd/ipa
	podman build -f Containerfile -t $(IMAGE) dist/image
