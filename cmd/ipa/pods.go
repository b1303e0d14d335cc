package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/plugins/builtin"
)

// catalog is the set of runtimes a server offers: the built-ins (less exec
// when it is switched off) and the external plugins that passed discovery.
type catalog struct {
	builtins map[string]bool
	external map[string]podapi.ExternalRuntime
	checked  bool // external files must match their allow-listed checksum at launch too
}

// discoverRuntimes builds the catalog. A plugin refused by the allow-list is
// logged and left out; the server still starts with the others.
func discoverRuntimes(so *serveOptions, log *slog.Logger) (*catalog, error) {
	c := &catalog{builtins: map[string]bool{}, external: map[string]podapi.ExternalRuntime{}}
	for _, rt := range builtin.All() {
		if rt.Name != "exec" || so.enableExec {
			c.builtins[rt.Name] = true
		}
	}
	if so.pluginDir == "" {
		return c, nil
	}
	var allow map[string]string
	if so.pluginSHA256File != "" {
		var err error
		if allow, err = readChecksums(so.pluginSHA256File); err != nil {
			return nil, err
		}
		c.checked = true
	}
	found, err := podapi.Discover(so.pluginDir, allow)
	if err != nil {
		log.Warn("plugin refused", "plugin_dir", so.pluginDir, "err", err)
	}
	for _, rt := range found {
		if _, clash := builtin.Get(rt.Name); clash {
			log.Warn("external plugin ignored: a built-in runtime has that name", "runtime", rt.Name, "path", rt.Path)
			continue
		}
		c.external[rt.Name] = rt
		log.Info("external runtime found", "runtime", rt.Name, "path", rt.Path, "sha256", rt.SHA256)
	}
	return c, nil
}

// readChecksums reads an allow-list in sha256sum's format: "<hex>  <name>"
// per line, # comments allowed.
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
		if len(fields) != 2 || len(fields[0]) != 64 {
			return nil, fmt.Errorf("--plugin-sha256-file %s:%d: want \"<sha256 hex>  <file name>\"", path, i+1)
		}
		allow[filepath.Base(strings.TrimPrefix(fields[1], "*"))] = strings.ToLower(fields[0])
	}
	return allow, nil
}

// runtimes lists the catalog for the manager, built-ins first.
func (c *catalog) runtimes() []service.Runtime {
	var out []service.Runtime
	for _, rt := range builtin.All() {
		if c.builtins[rt.Name] {
			out = append(out, service.Runtime{Name: rt.Name, Description: rt.Description, ValidateConfig: rt.ValidateConfig})
		}
	}
	for _, rt := range c.external {
		out = append(out, service.Runtime{Name: rt.Name, Description: "External runtime plugin " + filepath.Base(rt.Path) + "."})
	}
	return out
}

// command returns how to launch a runtime's plugin: built-ins by
// re-executing this binary, external ones from their discovered path, after
// checking the file still has its allow-listed checksum.
func (c *catalog) command(runtime string) (*exec.Cmd, error) {
	if c.builtins[runtime] {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		return exec.Command(exe, builtin.Args(runtime)...), nil
	}
	rt, ok := c.external[runtime]
	if !ok {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown runtime %q.", runtime)
	}
	if c.checked {
		sum, err := fileSHA256(rt.Path)
		if err != nil || sum != rt.SHA256 {
			return nil, fmt.Errorf("runtime %s: plugin file changed since it was checked", runtime)
		}
	}
	return exec.Command(rt.Path), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// instanceID names this server as the owner of its pods' leases. It must be
// the same after a restart (to find and reattach its pods) and differ
// between servers sharing a database: by default the host name and the data
// directory, which two servers never share.
func instanceID(so *serveOptions, dataDir string) string {
	if so.instanceID != "" {
		return so.instanceID
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return host + ":" + dataDir
}
