package exec

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/sandbox"
)

// Config limits and defaults.
const (
	MaxArgs            = 256
	MaxCommandBytes    = 16 << 10
	MaxEnvVars         = 128
	MaxEnvBytes        = 32 << 10
	MaxTimeoutMs       = 7 * 24 * 3600 * 1000
	DefaultOutputLines = 10_000
	MaxOutputLines     = 1_000_000
)

// Config is the exec runtime config.
type Config struct {
	Command        []string          `json:"command"`                  // argv; required
	Env            map[string]string `json:"env,omitempty"`            // the command's variables, over PATH, HOME and LANG; see commandEnv
	TimeoutMs      int               `json:"timeoutMs,omitempty"`      // 0 = none; then stopped like Stop
	MaxOutputLines int               `json:"maxOutputLines,omitempty"` // 0 = DefaultOutputLines; head and tail are kept
	Limits         Limits            `json:"limits,omitempty"`         // resource limits of the command; see Limits
	Sandbox        SandboxConfig     `json:"sandbox,omitempty"`        // what the sandbox lets through; see SandboxConfig
	// OnSuccess says what a command that exits 0 does to its task:
	// OnSuccessStop (the default) leaves it open, OnSuccessComplete
	// completes it.
	OnSuccess string `json:"onSuccess,omitempty"`
}

// OnSuccess values.
const (
	OnSuccessStop     = "STOP"
	OnSuccessComplete = "COMPLETE"
)

// SandboxConfig adjusts the sandbox (bwrap) a command runs in when the
// server sandboxes exec pods (--sandbox): by default no network and only the
// workspace writable.
type SandboxConfig struct {
	// Network keeps the host's network (loopback included).
	Network bool `json:"network,omitempty"`
	// Writable are more absolute paths the command may write; each must
	// exist and must not hold or lie inside the server's own files.
	Writable []string `json:"writable,omitempty"`
}

// MaxWritable bounds sandbox.writable.
const MaxWritable = 32

// Limits are per-pod resource limits, applied to the command (and inherited
// by everything it starts) as Linux rlimits before the command runs; 0 means
// no limit. They need no privilege, but an rlimit cannot be raised above the
// plugin's own hard limit: asking for more fails the start.
type Limits struct {
	// MemoryMB caps the address space (RLIMIT_AS) of each process of the
	// command: an allocation past it fails. Virtual size, not resident
	// memory: runtimes that reserve much address space up front (Go, JVM)
	// need a generous value.
	MemoryMB int `json:"memoryMB,omitempty"`
	// CPUSeconds caps the CPU time of each process (RLIMIT_CPU): SIGXCPU at
	// the limit, SIGKILL one second later.
	CPUSeconds int `json:"cpuSeconds,omitempty"`
	// OpenFiles caps the open file descriptors of each process (RLIMIT_NOFILE).
	OpenFiles int `json:"openFiles,omitempty"`
	// Processes caps RLIMIT_NPROC. The kernel counts it per user, not per
	// pod: every process of the user the server runs as (the server, its
	// plugins, other pods' commands) counts, so the command cannot fork at
	// all once that user has Processes processes.
	Processes int `json:"processes,omitempty"`
}

// Limit bounds.
const (
	MaxMemoryMB   = 1 << 20 // 1 TiB
	MaxCPUSeconds = MaxTimeoutMs / 1000
	MaxOpenFiles  = 1 << 20
	MaxProcesses  = 1 << 22
)

func (l Limits) any() bool { return l != Limits{} }

func checkLimits(l Limits) error {
	for _, c := range []struct {
		name     string
		v, limit int
	}{
		{"memoryMB", l.MemoryMB, MaxMemoryMB},
		{"cpuSeconds", l.CPUSeconds, MaxCPUSeconds},
		{"openFiles", l.OpenFiles, MaxOpenFiles},
		{"processes", l.Processes, MaxProcesses},
	} {
		if c.v < 0 || c.v > c.limit {
			return invalid("exec runtime config: limits.%s must be between 0 (none) and %d, got %d", c.name, c.limit, c.v)
		}
	}
	return nil
}

// ParseConfig decodes and validates raw. Returns an EINVALID *ipa.Error
// (reason INVALID_ARGUMENT) saying what is wrong.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return Config{}, invalid(`exec runtime config is required: {"command": ["sh", "-c", "echo hi"]}`)
	}
	if err := envTypes(t); err != nil {
		return Config{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, invalid(`exec runtime config must be a JSON object like {"command": ["sh", "-c", "echo hi"], "env": {"K": "V"}, "timeoutMs": 60000, "maxOutputLines": 10000, "limits": {"memoryMB": 512, "cpuSeconds": 60, "openFiles": 256, "processes": 64}, "sandbox": {"network": false, "writable": ["/srv/cache"]}, "onSuccess": "COMPLETE"}: %v`, err)
	}
	switch {
	case len(c.Command) == 0:
		return Config{}, invalid("exec runtime config: command is required (a non-empty array of strings)")
	case strings.TrimSpace(c.Command[0]) == "":
		return Config{}, invalid("exec runtime config: command[0] (the program) must not be empty")
	case len(c.Command) > MaxArgs:
		return Config{}, invalid("exec runtime config: command has %d arguments; the limit is %d", len(c.Command), MaxArgs)
	}
	n := 0
	for i, a := range c.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return Config{}, invalid("exec runtime config: command[%d] contains a NUL byte", i)
		}
		n += len(a)
	}
	if n > MaxCommandBytes {
		return Config{}, invalid("exec runtime config: command is %d bytes; the limit is %d", n, MaxCommandBytes)
	}
	if err := checkEnv(c.Env); err != nil {
		return Config{}, err
	}
	if c.TimeoutMs < 0 || c.TimeoutMs > MaxTimeoutMs {
		return Config{}, invalid("exec runtime config: timeoutMs must be between 0 (none) and %d, got %d", MaxTimeoutMs, c.TimeoutMs)
	}
	if c.MaxOutputLines < 0 || c.MaxOutputLines > MaxOutputLines {
		return Config{}, invalid("exec runtime config: maxOutputLines must be between 0 (default %d) and %d, got %d", DefaultOutputLines, MaxOutputLines, c.MaxOutputLines)
	}
	if err := checkLimits(c.Limits); err != nil {
		return Config{}, err
	}
	if len(c.Sandbox.Writable) > MaxWritable {
		return Config{}, invalid("exec runtime config: sandbox.writable has %d paths; the limit is %d", len(c.Sandbox.Writable), MaxWritable)
	}
	for i, w := range c.Sandbox.Writable {
		if err := sandbox.CheckWritable(w, nil); err != nil {
			return Config{}, invalid("exec runtime config: sandbox.writable[%d] %v", i, err)
		}
	}
	switch c.OnSuccess {
	case "":
		c.OnSuccess = OnSuccessStop
	case OnSuccessStop, OnSuccessComplete:
	default:
		return Config{}, invalid("exec runtime config: onSuccess must be %s or %s, got %q", OnSuccessComplete, OnSuccessStop, c.OnSuccess)
	}
	if c.MaxOutputLines == 0 {
		c.MaxOutputLines = DefaultOutputLines
	}
	return c, nil
}

// CompletesOnSuccess reports whether a valid exec config raw completes its
// task when the command exits 0 (onSuccess COMPLETE).
func CompletesOnSuccess(raw []byte) bool {
	c, err := ParseConfig(raw)
	return err == nil && c.OnSuccess == OnSuccessComplete
}

// ValidateConfig reports whether raw is a valid exec config, without
// starting anything; see ParseConfig.
func ValidateConfig(raw []byte) error {
	_, err := ParseConfig(raw)
	return err
}

func invalid(format string, args ...any) error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}
