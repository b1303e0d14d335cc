package hardening

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openInheritable opens /dev/null without close-on-exec, as a parent may
// hand a descriptor down.
func openInheritable(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if cloexec(t, fd) {
		t.Fatal("the descriptor is close-on-exec already: the test proves nothing")
	}
	return fd
}

func cloexec(t *testing.T, fd int) bool {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	return flags&unix.FD_CLOEXEC != 0
}

func TestCloseInheritedFiles(t *testing.T) {
	fd := openInheritable(t)
	if err := CloseInheritedFiles(); err != nil {
		t.Fatal(err)
	}
	if !cloexec(t, fd) {
		t.Fatal("an inherited descriptor stays open across exec")
	}
	for _, std := range []int{0, 1, 2} {
		if cloexec(t, std) {
			t.Fatalf("descriptor %d was marked close-on-exec", std)
		}
	}
}

// The fallback for kernels before close_range's CLOEXEC flag does the same.
func TestMarkEachCloexec(t *testing.T) {
	fd := openInheritable(t)
	if err := markEachCloexec(); err != nil {
		t.Fatal(err)
	}
	if !cloexec(t, fd) {
		t.Fatal("an inherited descriptor stays open across exec")
	}
}

func TestNotDumpable(t *testing.T) {
	if err := NotDumpable(); err != nil {
		t.Fatal(err)
	}
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v != 0 {
		t.Fatalf("PR_GET_DUMPABLE = %d after NotDumpable, want 0", v)
	}
}
