#!/usr/bin/env bash
# Regenerates the Go code for Weir's protobuf schemas. The generated files are
# committed, so building Weir needs no protoc; run this after editing proto/.
# Needs: protoc (Debian: protobuf-compiler) and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.5
set -euo pipefail
cd "$(dirname "$0")/.."
for f in $(find proto -name '*.proto'); do
  protoc -I proto --go_out=. --go_opt=module=github.com/weirstream/weir "$f"
done
