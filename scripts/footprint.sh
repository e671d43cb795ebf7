#!/usr/bin/env bash
# Prints how many modules `go list -m all` lists for a program that imports
# only github.com/lightmesh/lightmesh/mesh (the core module, from this
# clone), the program itself included.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
cat > go.mod <<MOD
module example.com/footprint

go 1.26.8

require github.com/lightmesh/lightmesh v0.0.0

replace github.com/lightmesh/lightmesh => $root
MOD
cat > main.go <<'GO'
package main

import (
	"context"
	"net/http"

	"github.com/lightmesh/lightmesh/mesh"
)

func main() {
	m, err := mesh.New(context.Background())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	_ = &http.Client{Transport: m.Transport(nil)}
}
GO
GOWORK=off GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1
GOWORK=off go list -m all | wc -l
