package auth

import (
	"net"

	"golang.org/x/sys/unix"
)

// On macOS a Unix socket's peer is known (LOCAL_PEERCRED); a TCP
// connection's owner is not looked up, so the anonymous local door admits
// connections on --socket only.

func unixPeerUID(c *net.UnixConn) (int, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Xucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil || cerr != nil || cred == nil {
		return 0, false
	}
	return int(cred.Uid), true
}

func tcpPeerUID(client, server *net.TCPAddr) (int, bool) { return 0, false }
