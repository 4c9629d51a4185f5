#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, vet for Linux and macOS,
# staticcheck, then every test with the race detector. End-to-end tests
# build network namespaces, so run this as root (they skip otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi

echo "== go vet (linux, darwin)"
go vet ./...
GOOS=darwin go vet ./...

echo "== staticcheck (v0.8.2, fetched by go run from the Go module proxy)"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test -race"
go test -race -count=1 ./...

echo "== short fuzz runs (proxy/socks4 starts from its committed corpus in testdata/fuzz)"
go test -run='^$' -fuzz='^FuzzReadRequest$' -fuzztime=10s ./proxy/socks4
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=10s ./config
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=10s ./proxy/socks5udp
go test -run='^$' -fuzz='^FuzzAnswer$' -fuzztime=10s ./bind/dnscache
go test -run='^$' -fuzz='^FuzzHTTPRequest$' -fuzztime=10s ./proxy
go test -run='^$' -fuzz='^FuzzSOCKS5$' -fuzztime=10s ./proxy
