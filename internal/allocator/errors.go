package allocator

import (
	"errors"
	"fmt"
)

// Reason is a stable CamelCase word naming why an assignment failed; it is
// used as the reason of Kubernetes Events, so values never change.
type Reason string

// The reasons an assignment can fail.
const (
	// ReasonPoolExhausted: no admissible pool has a free address left.
	ReasonPoolExhausted Reason = "PoolExhausted"
	// ReasonIPInUse: the address is held by a Service it cannot be shared
	// with; the message names that Service and why.
	ReasonIPInUse Reason = "IPInUse"
	// ReasonNotInPool: a requested address lies in no pool, or not in the
	// named pool.
	ReasonNotInPool Reason = "NotInPool"
	// ReasonUnknownPool: the named pool does not exist.
	ReasonUnknownPool Reason = "UnknownPool"
	// ReasonPoolNotAllowed: the pool's serviceAllocation excludes the Service.
	ReasonPoolNotAllowed Reason = "PoolNotAllowed"
	// ReasonFamily: the family policy cannot be met by the pool or the
	// request (e.g. RequireDualStack from a single-family pool).
	ReasonFamily Reason = "Family"
	// ReasonInvalidRequest: the Service description itself is malformed.
	ReasonInvalidRequest Reason = "InvalidRequest"
)

// Error is every error the allocator returns; use errors.As to read Reason.
type Error struct {
	Reason Reason
	Msg    string
}

func (e Error) Error() string { return e.Msg }

// As lets errors.As fill a plain Error as well as an *Error, so callers may
// declare either.
func (e *Error) As(target any) bool {
	if t, ok := target.(*Error); ok {
		*t = *e
		return true
	}
	return false
}

// ReasonOf returns the Reason of an allocator error inside err, or "".
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}
