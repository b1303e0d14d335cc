package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ipa-dev/ipa/sdk/pod"
	"github.com/ipa-dev/ipa/sdk/pod/podtest"
)

// TestConformance builds this runtime and runs the ipa conformance kit on
// it: the plugin process is launched and driven as the server would.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hello")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	podtest.Run(t, podtest.Config{
		Command: []string{bin},
		Title:   "world",
		Expect: func(ctx context.Context, rec *podtest.Recording, _ pod.StateResponse) error {
			ok := rec.Wait(ctx, func(s podtest.Snapshot) bool {
				return slices.Contains(s.Output, podtest.OutputLine{Stream: pod.Stdout, Text: "hello, world"}) &&
					len(s.Events) == 1 && s.Events[0].Type == "runtime.hello.greeted" &&
					s.Phase == pod.PhasePlanning
			})
			if !ok {
				return fmt.Errorf("no greeting, event and PLANNING: %+v", rec.Snapshot())
			}
			return nil
		},
	})
}
