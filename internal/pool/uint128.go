package pool

import (
	"math"
	"math/bits"
	"net/netip"
)

// Uint128 is an unsigned 128-bit integer held in two uint64s, so that the
// size of any IPv6 range can be computed without math/big.
type Uint128 struct{ Hi, Lo uint64 }

// MaxUint128 is the largest Uint128; sizes saturate there.
var MaxUint128 = Uint128{math.MaxUint64, math.MaxUint64}

// Cmp returns -1, 0 or +1 as u is less than, equal to or greater than v.
func (u Uint128) Cmp(v Uint128) int {
	switch {
	case u.Hi < v.Hi:
		return -1
	case u.Hi > v.Hi:
		return 1
	case u.Lo < v.Lo:
		return -1
	case u.Lo > v.Lo:
		return 1
	}
	return 0
}

// IsZero reports whether u is zero.
func (u Uint128) IsZero() bool { return u.Hi == 0 && u.Lo == 0 }

// Add returns u+v, saturating at MaxUint128 instead of wrapping, because a
// wrapped count would silently report an almost-full pool as empty.
func (u Uint128) Add(v Uint128) Uint128 {
	lo, c := bits.Add64(u.Lo, v.Lo, 0)
	hi, c := bits.Add64(u.Hi, v.Hi, c)
	if c != 0 {
		return MaxUint128
	}
	return Uint128{hi, lo}
}

// Sub returns u-v, saturating at zero.
func (u Uint128) Sub(v Uint128) Uint128 {
	lo, b := bits.Sub64(u.Lo, v.Lo, 0)
	hi, b := bits.Sub64(u.Hi, v.Hi, b)
	if b != 0 {
		return Uint128{}
	}
	return Uint128{hi, lo}
}

// Inc returns u+1 and false, or zero and true when u is MaxUint128.
func (u Uint128) Inc() (Uint128, bool) {
	lo, c := bits.Add64(u.Lo, 1, 0)
	hi, c := bits.Add64(u.Hi, 0, c)
	return Uint128{hi, lo}, c != 0
}

// Dec returns u-1 and false, or MaxUint128 and true when u is zero.
func (u Uint128) Dec() (Uint128, bool) {
	lo, b := bits.Sub64(u.Lo, 1, 0)
	hi, b := bits.Sub64(u.Hi, 0, b)
	return Uint128{hi, lo}, b != 0
}

// Uint64 converts u to a uint64, saturating at math.MaxUint64 (for metrics
// and status fields, which cannot hold 128 bits).
func (u Uint128) Uint64() uint64 {
	if u.Hi != 0 {
		return math.MaxUint64
	}
	return u.Lo
}

// Int64 converts u to an int64, saturating at math.MaxInt64 (Kubernetes
// status integers are signed).
func (u Uint128) Int64() int64 {
	if u.Hi != 0 || u.Lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u.Lo)
}

// String formats u in decimal.
func (u Uint128) String() string {
	if u.IsZero() {
		return "0"
	}
	var buf [40]byte
	i := len(buf)
	for !u.IsZero() {
		// Long division by 10 over the two halves.
		var r uint64
		u.Hi, r = bits.Div64(0, u.Hi, 10)
		u.Lo, r = bits.Div64(r, u.Lo, 10)
		i--
		buf[i] = byte('0' + r)
	}
	return string(buf[i:])
}

// AddrValue returns the integer value of a: the 32-bit value for IPv4 and the
// 128-bit value for IPv6. The zone, if any, is ignored.
func AddrValue(a netip.Addr) Uint128 {
	if a.Is4() {
		b := a.As4()
		return Uint128{Lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u Uint128
	for i := 0; i < 8; i++ {
		u.Hi = u.Hi<<8 | uint64(b[i])
		u.Lo = u.Lo<<8 | uint64(b[i+8])
	}
	return u
}

// AddrFromValue is the inverse of AddrValue; for IPv4 only the low 32 bits
// of v are used.
func AddrFromValue(v Uint128, is4 bool) netip.Addr {
	if is4 {
		x := uint32(v.Lo)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	var b [16]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(v.Hi)
		b[i+8] = byte(v.Lo)
		v.Hi >>= 8
		v.Lo >>= 8
	}
	return netip.AddrFrom16(b)
}
