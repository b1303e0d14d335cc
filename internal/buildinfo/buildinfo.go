// Package buildinfo says which build of ipa is running: the version string
// stamped by release builds and the commit, commit time and Go version the Go
// toolchain embeds in every binary built from a git checkout, so `go build`
// and `go run` need no -ldflags to report them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// version is stamped by release builds:
//
//	go build -ldflags "-X github.com/ipa-dev/ipa/internal/buildinfo.version=v1.2.3"
//
// A build without it reports "dev". commit and buildTime may be stamped the
// same way; they fill in what the toolchain could not embed (a build outside
// a git checkout, or with -buildvcs=false).
var (
	version   = "dev"
	commit    = ""
	buildTime = ""
)

// Info describes the running binary.
type Info struct {
	Version   string // release version, or "dev"
	Commit    string // git revision, or "unknown"
	Time      string // build time (RFC 3339) if stamped, else the commit's time, else "unknown"
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

var (
	once sync.Once
	info Info
)

// Get returns the running binary's build information.
func Get() Info {
	once.Do(func() {
		info = Info{Version: version, Commit: "unknown", Time: "unknown", GoVersion: runtime.Version()}
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					info.Commit = s.Value
				case "vcs.time":
					info.Time = s.Value
				case "vcs.modified":
					info.Modified = s.Value == "true"
				}
			}
		}
		if commit != "" && info.Commit == "unknown" {
			info.Commit = commit
		}
		if buildTime != "" {
			info.Time = buildTime
		}
	})
	return info
}

// ShortCommit is the commit's first 12 hex digits, with "-dirty" when the
// work tree had uncommitted changes.
func (i Info) ShortCommit() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Modified {
		c += "-dirty"
	}
	return c
}

// Short is the version and commit in one word, as instances report it:
// "v1.2.3+3f2a9c1d0b7e" or "dev+3f2a9c1d0b7e-dirty".
func (i Info) Short() string {
	if i.Commit == "unknown" {
		return i.Version
	}
	return i.Version + "+" + i.ShortCommit()
}

// String is the one-line form `ipa version` prints.
func (i Info) String() string {
	return fmt.Sprintf("ipa %s (commit %s, built %s, %s %s/%s)",
		i.Version, i.ShortCommit(), i.Time, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}
