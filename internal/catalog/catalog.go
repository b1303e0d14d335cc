// Package catalog decides which runtimes this server offers and how to
// launch each: the built-ins (less exec when it is switched off) and the
// external plugins found in the plugin directory.
//
// With an allow-list, the bytes that were checked are the bytes that run:
// discovery copies each listed plugin into a private directory under the
// data directory, hashing the copy as it is written, and pods are launched
// from that copy only (see pin.go). Without an allow-list nothing pins a
// plugin's bytes, and plugins run from the plugin directory as they are at
// launch.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ipa-dev/ipa/internal/configschema"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/sandbox"
	"github.com/ipa-dev/ipa/plugins/builtin"
	execrt "github.com/ipa-dev/ipa/plugins/exec"
)

// Options says where runtimes come from.
type Options struct {
	// PluginDir holds external runtime plugins, one executable per runtime,
	// named after its file. Empty: built-ins only.
	PluginDir string
	// SHA256File is an allow-list in sha256sum's format. Empty: every
	// executable in PluginDir is offered, unchecked.
	SHA256File string
	// EnableExec offers the built-in exec runtime.
	EnableExec bool
	// ExecRole is the role needed to create or start an exec task; ""
	// means ADMIN. Whoever may run exec runs code as the server's OS user.
	ExecRole ipa.Role
	// Sandbox is how exec commands are sandboxed (--sandbox); "" is
	// sandbox.Auto. An ExecRole of OPERATOR makes it sandbox.Required.
	Sandbox sandbox.Mode
	// SandboxHide are the server's own files hidden from sandboxed
	// commands: its data directory, store, key files.
	SandboxHide []string
	// Bwrap names the bwrap program; "" looks it up.
	Bwrap string
	// WorkspaceMaxBytes caps each exec task's workspace; 0: no cap.
	WorkspaceMaxBytes int64
	// DataDir is the server's data directory; the private copies of
	// allow-listed plugins live in DataDir/plugins. Required with SHA256File.
	DataDir string
}

// Catalog is the set of runtimes a server offers. It does not change after
// Discover, so it is safe for concurrent use.
type Catalog struct {
	builtins map[string]bool
	external map[string]external
	execRole ipa.Role
	// bwrap is the working bwrap exec commands run under; "" for none.
	bwrap string
	hide  string // sandbox.EnvHide's value
	// wsMax is --workspace-max-bytes, for exec plugins.
	wsMax int64
	// noSandbox, when set, refuses exec pods: the sandbox is required and
	// bwrap does not work.
	noSandbox error
}

// external is a plugin that passed discovery.
type external struct {
	name   string
	path   string // the file executed: the private copy when allow-listed
	sha256 string // of the file at discovery (hex)
	// What the plugin said about itself when discovery launched it.
	probe  podapi.Probe
	schema *configschema.Schema // nil: none declared, or not usable
}

// Discover builds the catalog. A plugin refused by the allow-list (or that
// cannot be copied) is logged and left out; the server still starts with
// the others. It returns an error when the allow-list cannot be read or the
// private plugin directory is not safe to use (not ours, or writable by
// others), since then no plugin could be pinned.
func Discover(opts Options, log *slog.Logger) (*Catalog, error) {
	c := &Catalog{builtins: map[string]bool{}, external: map[string]external{}, execRole: opts.ExecRole, wsMax: opts.WorkspaceMaxBytes}
	if c.execRole == "" {
		c.execRole = ipa.RoleAdmin
	}
	for _, rt := range builtin.All() {
		if rt.Name != "exec" || opts.EnableExec {
			c.builtins[rt.Name] = true
		}
	}
	if opts.EnableExec {
		c.setSandbox(opts, log)
	}
	if opts.PluginDir == "" {
		return c, nil
	}
	var found []external
	if opts.SHA256File == "" {
		rts, err := podapi.Discover(opts.PluginDir, nil)
		if err != nil {
			log.Warn("plugin refused", "plugin_dir", opts.PluginDir, "err", err)
		}
		for _, rt := range rts {
			found = append(found, external{name: rt.Name, path: rt.Path, sha256: rt.SHA256})
		}
	} else {
		allow, err := readChecksums(opts.SHA256File)
		if err != nil {
			return nil, err
		}
		if opts.DataDir == "" {
			return nil, errors.New("--plugin-sha256-file needs a data directory for the private plugin copies")
		}
		dataDir, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
		var refused []string
		found, refused, err = pinAll(opts.PluginDir, allow, filepath.Join(dataDir, privateDirName))
		if err != nil {
			return nil, err
		}
		for _, r := range refused {
			log.Warn("plugin refused", "plugin_dir", opts.PluginDir, "err", r)
		}
	}
	var kept []external
	for _, rt := range found {
		if _, clash := builtin.Get(rt.name); clash {
			log.Warn("external plugin ignored: a built-in runtime has that name", "runtime", rt.name, "path", rt.path)
			continue
		}
		kept = append(kept, rt)
	}
	describeAll(kept, log)
	for _, rt := range kept {
		c.external[rt.name] = rt
		log.Info("external runtime found", "runtime", rt.name, "path", rt.path, "sha256", rt.sha256,
			"protocol_version", rt.probe.ProtocolVersion, "config_schema", rt.schema != nil)
	}
	return c, nil
}

// setSandbox probes bwrap once for every exec pod to come: under
// sandbox.Auto a bwrap that does not work leaves exec unsandboxed (logged);
// under sandbox.Required it refuses exec pods with FAILED_PRECONDITION.
func (c *Catalog) setSandbox(opts Options, log *slog.Logger) {
	mode := opts.Sandbox
	if mode == "" {
		mode = sandbox.Auto
	}
	if c.execRole == ipa.RoleOperator {
		mode = sandbox.Required
	}
	if mode == sandbox.Off {
		log.Info("exec sandbox off", "sandbox", mode)
		return
	}
	path, err := sandbox.Find(context.Background(), opts.Bwrap)
	if err != nil {
		if mode == sandbox.Required {
			log.Error("exec pods refused: the sandbox is required and bwrap does not work", "sandbox", mode, "error", err)
			c.noSandbox = ipa.Errorf(ipa.EFAILEDPRECONDITION, "", "Exec pods need the sandbox on this server, and bubblewrap (bwrap) does not work here.")
			return
		}
		log.Warn("exec pods run without a sandbox: bwrap does not work", "sandbox", mode, "error", err)
		return
	}
	c.bwrap, c.hide = path, sandbox.EncodeHide(opts.SandboxHide)
	log.Info("exec sandbox on", "sandbox", mode, "bwrap", path)
}

// Runtimes lists the catalog, built-ins first, then external runtimes by name.
func (c *Catalog) Runtimes() []ipa.Runtime {
	var out []ipa.Runtime
	for _, rt := range builtin.All() {
		if c.builtins[rt.Name] {
			r := ipa.Runtime{
				Name:               rt.Name,
				Description:        rt.Description,
				ValidateConfig:     rt.ValidateConfig,
				ProtocolVersion:    podapi.ProtocolVersion,
				ConfigSchema:       json.RawMessage(rt.ConfigSchema),
				ExampleConfig:      json.RawMessage(rt.ExampleConfig),
				CompletesOnSuccess: rt.CompletesOnSuccess,
			}
			if rt.Name == "exec" {
				r.Role = c.execRole
				r.Unavailable = c.noSandbox
			}
			out = append(out, r)
		}
	}
	names := make([]string, 0, len(c.external))
	for n := range c.external {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, c.external[n].runtime())
	}
	return out
}

// Command returns how to launch a runtime's plugin: built-ins by
// re-executing this binary, external ones from the file discovery chose.
// It returns an EINVALID *ipa.Error for a runtime the catalog does not offer.
//
// An allow-listed plugin is not hashed again here. Its private copy was
// hashed as it was written, and only this user can change it (the checks in
// pin.go); hashing it again before exec would open the very check-then-run
// gap the copy closes, guard only against this same user (who could as well
// replace the ipa binary), and cost a read of the whole file per launch.
func (c *Catalog) Command(runtime string) (*exec.Cmd, error) {
	if c.builtins[runtime] {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		cmd := exec.Command(exe, builtin.Args(runtime)...)
		if runtime == "exec" {
			if c.noSandbox != nil {
				return nil, c.noSandbox
			}
			if c.bwrap != "" {
				cmd.Env = []string{sandbox.EnvBwrap + "=" + c.bwrap, sandbox.EnvHide + "=" + c.hide}
			}
			if c.wsMax > 0 {
				cmd.Env = append(cmd.Env, execrt.EnvWorkspaceMax+"="+strconv.FormatInt(c.wsMax, 10))
			}
		}
		return cmd, nil
	}
	rt, ok := c.external[runtime]
	if !ok {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown runtime %q.", runtime)
	}
	return exec.Command(rt.path), nil
}

// readChecksums reads an allow-list in sha256sum's format: "<hex>  <name>"
// per line ("*name" for binary mode), # comments and blank lines allowed.
// Names are reduced to their base name; digests are lower-cased. It returns
// an error naming the first malformed line.
func readChecksums(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--plugin-sha256-file: %w", err)
	}
	allow := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || !isHexSHA256(fields[0]) {
			return nil, fmt.Errorf("--plugin-sha256-file %s:%d: want \"<sha256 hex>  <file name>\"", path, i+1)
		}
		allow[filepath.Base(strings.TrimPrefix(fields[1], "*"))] = strings.ToLower(fields[0])
	}
	return allow, nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}
