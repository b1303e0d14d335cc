package demo

import (
	"context"
	"encoding/json"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// Describe says what the runtime is; the catalog lists the same without
// launching it.
func (r *Runtime) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{
		Description:   Description,
		ConfigSchema:  json.RawMessage(ConfigSchema),
		ExampleConfig: json.RawMessage(ExampleConfig),
	}, nil
}
