package demo

import (
	"context"

	"github.com/ipa-dev/ipa/internal/podapi"
)

var _ podapi.Describer = (*Runtime)(nil)

// Describe says what the runtime is (protocol version 2); the catalog lists
// the same without launching it.
func (r *Runtime) Describe(context.Context, podapi.DescribeRequest) (podapi.DescribeResponse, error) {
	return podapi.DescribeResponse{
		Description:   Description,
		ConfigSchema:  []byte(ConfigSchema),
		ExampleConfig: []byte(ExampleConfig),
	}, nil
}
