//go:build !unix

package hardening

// Outside Unix, descriptors are not inherited by default: nothing to do.
func closeRangeCloexec() error { return nil }

func setCloexec(int) {}

// NotDumpable does nothing outside Linux.
func NotDumpable() error { return nil }
