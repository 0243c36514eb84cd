// Package allocator decides which load-balancer addresses each Service holds, as a pure, deterministic state machine with no I/O.
package allocator
