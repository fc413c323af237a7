#!/usr/bin/env bash
# Regenerates the Swift code for every Sources/**/Proto/*.proto, beside its .proto (public visibility):
# the messages (<name>.pb.swift, protoc + protoc-gen-swift), then the typed RPC method descriptors of its
# `service` blocks (<name>.rpc.swift, scripts/generate-rpc.py, which needs no plugin and can run alone).
# The generated files are committed; run this after editing any .proto.
# Builds swift-protobuf's protoc-gen-swift (scripts/protoc-plugin) into .build-protoc only if it is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

protoc="${PROTOC:-$(command -v protoc || true)}"
if [[ -z "$protoc" ]]; then
    echo "generate-protos: protoc not found; install it with: apt-get install -y protobuf-compiler" >&2
    exit 1
fi

plugin="$root/.build-protoc/release/protoc-gen-swift"
if [[ ! -x "$plugin" ]]; then
    echo "generate-protos: building protoc-gen-swift (takes a few minutes, once)" >&2
    swift build -c release --product protoc-gen-swift --scratch-path "$root/.build-protoc" \
        --package-path "$root/scripts/protoc-plugin"
fi

found=0
while IFS= read -r -d '' proto; do
    dir="$(dirname "$proto")"
    echo "generate-protos: $proto" >&2
    "$protoc" --plugin=protoc-gen-swift="$plugin" \
        --proto_path="$dir" \
        --swift_opt=Visibility=Public \
        --swift_out="$dir" \
        "$proto"
    found=$((found + 1))
done < <(find Sources -type f -path '*/Proto/*.proto' -print0 | sort -z)

echo "generate-protos: generated $found file(s)" >&2

python3 "$root/scripts/generate-rpc.py"
