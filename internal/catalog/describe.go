package catalog

import (
	"context"
	"encoding/json"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/configschema"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// DescribeTimeout bounds how long discovery waits for one plugin to start and
// describe itself.
const DescribeTimeout = 10 * time.Second

// describeAll launches every plugin once, all at the same time, to learn its
// protocol version, description, config schema and example. A plugin that
// cannot be launched or does not describe itself is still offered (its pods
// will fail to start, or it predates self-description); it is logged and
// shown with a description naming it.
func describeAll(rts []external, log *slog.Logger) {
	var wg sync.WaitGroup
	for i := range rts {
		wg.Add(1)
		go func(rt *external) {
			defer wg.Done()
			rt.describe(log)
		}(&rts[i])
	}
	wg.Wait()
}

func (rt *external) describe(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), DescribeTimeout)
	defer cancel()
	p, err := podapi.ProbeCommand(ctx, exec.Command(rt.path), DescribeTimeout, nil)
	if err != nil {
		log.Warn("external runtime did not describe itself", "runtime", rt.name, "path", rt.path, "err", err)
		return
	}
	rt.probe = p
	if !json.Valid(p.ExampleConfig) {
		rt.probe.ExampleConfig = nil
	}
	if len(p.ConfigSchema) == 0 {
		return
	}
	s, err := configschema.Compile(p.ConfigSchema)
	if err != nil {
		// Not checked and not shown: a schema the server cannot use would
		// mislead whoever reads it.
		log.Warn("external runtime's config schema ignored", "runtime", rt.name, "err", err)
		rt.probe.ConfigSchema = nil
		return
	}
	rt.schema = s
	if len(rt.probe.ExampleConfig) > 0 {
		if err := s.Validate(rt.probe.ExampleConfig); err != nil {
			log.Warn("external runtime's example config does not match its schema", "runtime", rt.name, "err", err)
		}
	}
}

// runtime is the catalog entry of a discovered plugin.
func (rt external) runtime() ipa.Runtime {
	r := ipa.Runtime{
		Name:            rt.name,
		Description:     rt.probe.Description,
		ProtocolVersion: rt.probe.ProtocolVersion,
		ConfigSchema:    json.RawMessage(rt.probe.ConfigSchema),
		ExampleConfig:   json.RawMessage(rt.probe.ExampleConfig),
	}
	if r.Description == "" {
		r.Description = "External runtime plugin " + rt.name + "."
	}
	if rt.schema != nil {
		r.ValidateConfig = rt.schema.Validate
	}
	return r
}
