#!/bin/sh
# Regenerates the DESCRIPTORS blob of hello-py: the wire protocol
# (internal/podapi/proto/runtime.proto of ipa), go-plugin's broker and
# controller services (copied here from github.com/hashicorp/go-plugin
# internal/plugin, v1.8.0), and the gRPC error status shape. Needs protoc.
set -eu
cd "$(dirname "$0")"
protoc -I ../../internal/podapi/proto -I . --include_imports \
  --descriptor_set_out=/dev/stdout \
  runtime.proto grpc_broker.proto grpc_controller.proto status.proto | base64 -w 76
