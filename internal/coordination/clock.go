package coordination

import "time"

// Clock is the time this instance reads and the timers it sets. Durations
// between two Now readings are what the heartbeat loop measures (a pause,
// the watch after a reconnection); comparisons with other instances'
// heartbeats use the database's clock instead (Store.Now).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer set by Clock.AfterFunc.
type Timer interface {
	// Stop keeps the timer from firing; false when it fired or was stopped.
	Stop() bool
}

// SystemClock is the process's clock (monotonic for durations).
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
