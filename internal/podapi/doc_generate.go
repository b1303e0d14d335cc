package podapi

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative proto/runtime.proto
//go:generate sh -c "protoc -I proto --include_source_info --descriptor_set_out=/dev/stdout proto/runtime.proto | go run ./protodoc -doc ../../docs/runtimes.md"
