package podapi

import "google.golang.org/grpc/stats"

var (
	statsConnBegin stats.ConnBegin
	statsConnEnd   stats.ConnEnd
)
