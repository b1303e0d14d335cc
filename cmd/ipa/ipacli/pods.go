package ipacli

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
)

// instanceID names this server as the owner of its pods' leases. It must be
// the same after a restart (to find and reattach its pods) and differ
// between servers sharing a database: by default the host name and a digest
// of the data directory, which two servers never share. The digest, not the
// path: the id is shown to every viewer (Query.instances, Pod.instanceId,
// pod events), and a server's file layout is not theirs to see.
//
// former lists the ids the same server had under earlier defaults (the host
// name and the data directory's path), so it adopts what it left under them.
func instanceID(so *serveOptions, dataDir string) (id string, former []string) {
	if so.instanceID != "" {
		return so.instanceID, nil
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	sum := sha256.Sum256([]byte(dataDir))
	return host + ":" + hex.EncodeToString(sum[:6]), []string{host + ":" + dataDir}
}
