// Package builtin is the registry of the runtimes that ship inside the ipa
// binary. The server launches a built-in runtime out of process by
// re-executing its own binary with Args(name) (the hidden command
// "ipa plugin <name>"), whose handler calls Lookup(name) and runs the serve
// func it returns; so `go run ./cmd/ipa serve` needs no extra build.
package builtin

import (
	"sort"

	"github.com/ipa-dev/ipa/plugins/demo"
	"github.com/ipa-dev/ipa/plugins/exec"
)

// Command is the (hidden) subcommand of the ipa binary that serves a built-in
// runtime: `ipa plugin <name>`.
const Command = "plugin"

// Runtime describes one built-in runtime.
type Runtime struct {
	Name        string
	Description string
	// Serve runs the runtime as a plugin process; it never returns.
	Serve func()
	// ValidateConfig checks a runtime config (JSON) without starting a
	// process; it returns an EINVALID *ipa.Error saying what is wrong.
	ValidateConfig func(raw []byte) error
	// ConfigSchema (a JSON Schema) and ExampleConfig (a valid config)
	// describe the runtime config in the runtimes query.
	ConfigSchema, ExampleConfig string
	// CompletesOnSuccess: see ipa.Runtime.CompletesOnSuccess.
	CompletesOnSuccess func(raw []byte) bool
}

var registry = map[string]Runtime{
	"demo": {Name: "demo", Description: demo.Description, Serve: demo.Serve, ValidateConfig: demo.ValidateConfig,
		ConfigSchema: demo.ConfigSchema, ExampleConfig: demo.ExampleConfig},
	"exec": {Name: "exec", Description: exec.Description, Serve: exec.Serve, ValidateConfig: exec.ValidateConfig,
		ConfigSchema: exec.ConfigSchema, ExampleConfig: exec.ExampleConfig, CompletesOnSuccess: exec.CompletesOnSuccess},
}

// Lookup returns the serve func of the built-in runtime name.
func Lookup(name string) (serve func(), ok bool) {
	r, ok := registry[name]
	return r.Serve, ok
}

// Get returns the built-in runtime name.
func Get(name string) (Runtime, bool) {
	r, ok := registry[name]
	return r, ok
}

// Names returns the names of the built-in runtimes, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns the built-in runtimes, sorted by name.
func All() []Runtime {
	out := make([]Runtime, 0, len(registry))
	for _, n := range Names() {
		out = append(out, registry[n])
	}
	return out
}

// Args is the argv (after the program) that makes the ipa binary serve the
// built-in runtime name: []string{"plugin", name}.
func Args(name string) []string { return []string{Command, name} }
