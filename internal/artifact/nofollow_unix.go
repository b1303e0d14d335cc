//go:build unix

package artifact

import "syscall"

// noFollow refuses to open a symbolic link (os.Root already keeps every
// open inside its directory; this also refuses a link in it).
const noFollow = syscall.O_NOFOLLOW
