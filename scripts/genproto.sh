#!/usr/bin/env bash
# Regenerates the Go code for Weir's protobuf schemas. The generated files are
# committed, so building Weir needs no protoc; run this after editing proto/.
# Needs: protoc (Debian: protobuf-compiler) and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.5
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
for f in $(find proto -name '*.proto'); do
  if grep -q '^service ' "$f"; then
    protoc -I proto --go_out=. --go_opt=module=github.com/weirstream/weir \
      --go-grpc_out=. --go-grpc_opt=module=github.com/weirstream/weir "$f"
  else
    protoc -I proto --go_out=. --go_opt=module=github.com/weirstream/weir "$f"
  fi
done
