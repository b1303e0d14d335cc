package auth

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// unixPeerUID is the uid of the process at the other end of a Unix socket,
// from the kernel (SO_PEERCRED: the credentials it had when it connected).
func unixPeerUID(c *net.UnixConn) (int, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil || cred == nil {
		return 0, false
	}
	return int(cred.Uid), true
}

// procNetTCP are the kernel's socket tables, IPv4 then IPv6. A variable so
// that a test can point them elsewhere.
var procNetTCP = [2]string{"/proc/net/tcp", "/proc/net/tcp6"}

// tcpPeerUID is the uid owning the client's end of the loopback TCP
// connection client → server, as identd finds it: the kernel's socket table
// row whose local address is the client's and whose remote address is the
// server's — asked by sock_diag for that one socket, else read from
// /proc/net/tcp and /proc/net/tcp6. Both ends are sockets of this machine's network namespace, so
// the row is there while the connection is open. Only loopback clients are
// looked up: a remote client's end is not in this machine's table.
func tcpPeerUID(client, server *net.TCPAddr) (int, bool) {
	if client == nil || server == nil || !client.IP.IsLoopback() {
		return 0, false
	}
	if uid, ok := sockDiagUID(client, server); ok {
		return uid, true
	}
	return procTCPPeerUID(client, server)
}

// procTCPPeerUID is tcpPeerUID from the text tables, for a kernel that
// does not answer sock_diag.
func procTCPPeerUID(client, server *net.TCPAddr) (int, bool) {
	if ip4, srv4 := client.IP.To4(), server.IP.To4(); ip4 != nil && srv4 != nil {
		if uid, ok := findSocketRow(procNetTCP[0], hex4(ip4, client.Port), hex4(srv4, server.Port)); ok {
			return uid, true
		}
		// A dual-stack client socket lists IPv4 peers as mapped addresses.
		return findSocketRow(procNetTCP[1], hex6(client.IP.To16(), client.Port), hex6(server.IP.To16(), server.Port))
	}
	return findSocketRow(procNetTCP[1], hex6(client.IP.To16(), client.Port), hex6(server.IP.To16(), server.Port))
}

// hex4 and hex6 write an address as the kernel's tables do: each 32-bit
// word of the address in the machine's byte order, in hex, then the port.
func hex4(ip net.IP, port int) string {
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip), port)
}

func hex6(ip net.IP, port int) string {
	var b strings.Builder
	for i := 0; i < 16; i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", port)
	return b.String()
}

// tcpTimeWait is the state of a closed connection's leftover row, owned by
// no one (uid 0): never the answer.
const tcpTimeWait = "06"

// findSocketRow returns the uid of table's row from local to remote.
func findSocketRow(table, local, remote string) (int, bool) {
	f, err := os.Open(table)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid …
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !strings.EqualFold(fields[1], local) || !strings.EqualFold(fields[2], remote) || fields[3] == tcpTimeWait {
			continue
		}
		uid, err := strconv.Atoi(fields[7])
		if err != nil {
			return 0, false
		}
		return uid, true
	}
	return 0, false
}
