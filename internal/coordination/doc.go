// Package coordination is how the instances sharing one database agree on
// who runs which pod: each instance's row and heartbeat, the pod leases and
// their fencing epochs, the takeover of a dead instance's pods, the pod
// commands that route a mutation to the owner of a pod, the drain that
// hands pods over on shutdown, and scheduling (sched.go): concurrency
// limits, the queue of pods waiting for a slot and pods waiting for their
// dependencies, decided in the store so every instance obeys one limit.
//
// It depends on nothing but narrow interfaces (Store, Pods, LocalPods) and
// an injected Clock, so every scenario — a pause shorter or longer than the
// TTL, a store outage, clock skew between instances, a late heartbeat racing
// a takeover — is a deterministic unit test; internal/app wires it to the
// real store and supervisor.
//
// The rules it keeps:
//
//   - Heartbeats are stamped, and compared, with the database's clock
//     (Store.Heartbeat and Store.Now), so skew between the instances' own
//     clocks never makes a live instance look dead.
//   - A server judges another dead only while its own view of the store is
//     continuous: after it could not reach the store (an outage, or a pause
//     of its own longer than the TTL) and at start-up, it takes over nothing
//     until it has watched the others' heartbeats for one TTL. Instances
//     that were alive throughout never lose pods to each other because the
//     database went away.
//   - An owner that was cut off keeps its pods running (their plugins only
//     stop when their own host is silent) and, once it reaches the store
//     again, first lets go of those another instance took over meanwhile;
//     the lease epochs fence whatever it would still write for them.
package coordination
