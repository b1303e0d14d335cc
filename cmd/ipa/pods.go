package main

import (
	"os"
)

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
