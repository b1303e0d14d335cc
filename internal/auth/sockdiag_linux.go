package auth

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// sockDiagUID asks the kernel for the one TCP socket from local to remote
// (NETLINK_SOCK_DIAG, an exact lookup, as `ss` makes) and returns its
// owner's uid. Reading /proc/net/tcp walks the kernel's whole connection
// hash table, about ten milliseconds on a typical machine; this finds the
// socket directly. ok is false when the kernel does not answer (no such
// socket, sock_diag unavailable): the caller reads the table instead.
func sockDiagUID(local, remote *net.TCPAddr) (uid int, ok bool) {
	family, size := uint8(unix.AF_INET), 4
	lip, rip := local.IP.To4(), remote.IP.To4()
	if lip == nil || rip == nil {
		family, size = unix.AF_INET6, 16
		lip, rip = local.IP.To16(), remote.IP.To16()
	}
	if lip == nil || rip == nil {
		return 0, false
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, false
	}

	// struct nlmsghdr, then struct inet_diag_req_v2 (linux/inet_diag.h):
	// family, protocol, ext, pad, states, then the socket id — ports and
	// addresses in network order, interface, cookie.
	const hdrLen, reqLen = unix.SizeofNlMsghdr, 56
	msg := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST) // no dump: one exact socket
	ne.PutUint32(msg[8:], 1)                  // sequence
	req := msg[hdrLen:]
	req[0], req[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(req[4:], 0xffffffff) // every state
	binary.BigEndian.PutUint16(req[8:], uint16(local.Port))
	binary.BigEndian.PutUint16(req[10:], uint16(remote.Port))
	copy(req[12:12+size], lip)
	copy(req[28:28+size], rip)
	ne.PutUint32(req[48:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(req[52:], 0xffffffff)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, false
	}

	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || n < hdrLen {
		return 0, false
	}
	// struct inet_diag_msg: family, state, timer, retrans, the 48-byte
	// socket id, expires, rqueue, wqueue, uid, inode.
	const stateOff, uidOff = 1, 4 + 48 + 12
	if typ := ne.Uint16(buf[4:]); typ != unix.SOCK_DIAG_BY_FAMILY || n < hdrLen+uidOff+4 {
		return 0, false // NLMSG_ERROR: no such socket
	}
	body := buf[hdrLen:n]
	if body[stateOff] == tcpStateTimeWait {
		return 0, false
	}
	return int(ne.Uint32(body[uidOff:])), true
}

// tcpStateTimeWait is TCP_TIME_WAIT: a closed connection's leftover, owned
// by no one.
const tcpStateTimeWait = 6
