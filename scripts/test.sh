#!/usr/bin/env bash
# Runs the whole test suite: Go tests with the race detector (SQLite always;
# PostgreSQL through a throwaway cluster the tests start themselves when the
# server binaries are installed), then, when Node.js is present, a check that
# the console's committed bundle (internal/ui/dist) is what its sources build,
# and the end-to-end suite with real third-party GraphQL clients and a
# headless Chromium.
#
#   IPA_REQUIRE_POSTGRES=1  fail instead of skipping when PostgreSQL is missing
#   IPA_REQUIRE_E2E=1       fail instead of skipping when Node.js or Chromium is missing
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go vet"
go vet ./...

# The first run compiles every package with the race detector, which takes
# several minutes on a cold two-core machine; go test prints a line per
# package as each one finishes.
echo "== go test -race (a cold build takes several minutes)"
go test -race -count=1 -timeout 20m ./...

echo "== chaos (8 exec pods on PostgreSQL: kills, server kill -9, database outage)"
IPA_CHAOS=1 IPA_CHAOS_PODS=8 go test -race -count=1 -timeout 5m -run TestChaos ./cmd/ipa/
# A brief fuzz run of the GraphQL endpoint (internal/securitytest). The first run
# instruments and rebuilds every dependency, which takes many minutes on two
# cores; the build cache makes later runs quick. Fuzz longer on demand with
#   go test -run '^$' -fuzz '^FuzzGraphQLRequest$' -fuzztime 30m ./internal/securitytest/
# (failing inputs are kept in internal/securitytest/testdata/fuzz/ and replayed by
# every later go test).
echo "== fuzz FuzzGraphQLRequest"
go test -run '^$' -fuzz '^FuzzGraphQLRequest$' -fuzztime 10s ./internal/securitytest/
# Hostile documents (deep, wide, fragment chains, repeated names, long lists),
# each request held to an allocation ceiling.
echo "== fuzz FuzzHostileDocument"
go test -run '^$' -fuzz '^FuzzHostileDocument$' -fuzztime 10s ./internal/securitytest/

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  echo "== console bundle matches its sources"
  (cd internal/ui/src && npm ci --no-audit --no-fund --loglevel=error && npm run check)
  chromium=${CHROMIUM_PATH:-${IPA_CHROMIUM:-/usr/bin/chromium}}
  if [ -x "$chromium" ]; then
    echo "== e2e (node $(node --version), Chromium $chromium)"
    (cd e2e && npm ci --no-audit --no-fund --loglevel=error && CHROMIUM_PATH="$chromium" npm test)
  elif [ "${IPA_REQUIRE_E2E:-}" = 1 ]; then
    echo "Chromium is required for the browser tests (IPA_REQUIRE_E2E=1): apt-get install -y chromium" >&2
    exit 1
  else
    echo "== e2e (node $(node --version)); browser tests skipped: no Chromium at $chromium (apt-get install -y chromium)"
    (cd e2e && npm ci --no-audit --no-fund --loglevel=error &&
      node --test --test-concurrency=1 --test-timeout=300000 $(ls test/*.test.js | grep -v -e ide.test.js -e console.test.js))
  fi
elif [ "${IPA_REQUIRE_E2E:-}" = 1 ]; then
  echo "Node.js is required for the end-to-end suite (IPA_REQUIRE_E2E=1)" >&2
  exit 1
else
  echo "== e2e skipped: Node.js not found"
fi
