package httpserver

// SkipSocketRecheck turns off (or back on) the credential check that every
// operation on an open WebSocket makes, for the benchmark comparing the two;
// it returns a function that restores the previous setting.
func SkipSocketRecheck(skip bool) (restore func()) {
	prev := skipSocketRecheck.Swap(skip)
	return func() { skipSocketRecheck.Store(prev) }
}
