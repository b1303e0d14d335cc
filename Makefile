# Common tasks. `make run` starts the server on the embedded SQLite default;
# `make test` runs the whole test suite.

GO ?= go

.PHONY: run test build generate bench fmt

run:
	$(GO) run ./cmd/ipa serve

test:
	./scripts/test.sh

build:
	$(GO) build -o bin/ipa ./cmd/ipa

# Regenerates the GraphQL server (gqlgen) and the plugin protocol (protoc).
generate:
	$(GO) generate ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/ ./internal/httpserver/ ./internal/supervisor/

fmt:
	gofmt -w $$(git ls-files '*.go')
