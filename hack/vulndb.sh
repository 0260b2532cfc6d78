#!/usr/bin/env bash
# Builds the Go vulnerability database that `make vuln` hands to govulncheck (-db file://...)
# from the golang.org/x/vulndb module pinned in hack/tools/vuln/go.mod, because vuln.go.dev is
# unreachable here while the Go module proxy is not. The module carries every report as OSV JSON
# (data/osv); indexdb, the vulndb repository's own tool, writes the index govulncheck reads.
# Cached in bin/vulndb/<version>/ and never rebuilt when present. Prints the directory.
# To move to a newer database: go get -modfile=hack/tools/vuln/go.mod golang.org/x/vulndb@latest
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
modfile=hack/tools/vuln/go.mod
version="$(go list -modfile="$modfile" -m -f '{{.Version}}' golang.org/x/vulndb)"
dir="$root/bin/vulndb/$version"

if [[ ! -f "$dir/index/db.json" ]]; then
	echo "building the vulnerability database from golang.org/x/vulndb@$version" >&2
	src="$(go mod download -modfile="$modfile" -json golang.org/x/vulndb | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
	[[ -d "$src/data/osv" ]] || { echo "no data/osv in golang.org/x/vulndb@$version ($src)" >&2; exit 1; }
	rm -rf "$dir.tmp"
	go tool -modfile="$modfile" indexdb -vulns "$src/data/osv" -out "$dir.tmp"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
fi

echo "$dir"
