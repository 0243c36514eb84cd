package election

import (
	"encoding/binary"
	"net/netip"
)

// The score function is a contract between speakers: during a rolling
// upgrade, old and new speakers must pick the same winner, so changing it
// makes two nodes announce one address until every speaker runs the new
// version. Keep it fixed.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnvAdd(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// nodeSeed hashes the length-prefixed node name; score continues from it,
// so the name is hashed once per election, not once per address.
func nodeSeed(name string) uint64 {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(name)))
	h := fnvAdd(fnvOffset64, l[:])
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime64
	}
	return h
}

// ipKey is the length-prefixed address: 1 byte of length, then 4 or 16
// bytes, so an IPv4 address never collides with its IPv4-mapped form.
type ipKey struct {
	b [17]byte
	n int
}

func makeIPKey(ip netip.Addr) ipKey {
	var k ipKey
	if ip.Is4() {
		a := ip.As4()
		k.b[0] = 4
		copy(k.b[1:], a[:])
		k.n = 5
	} else {
		a := ip.As16()
		k.b[0] = 16
		copy(k.b[1:], a[:])
		k.n = 17
	}
	return k
}

// score is the rendezvous weight of a node for an address. FNV-1a alone
// mixes its last bytes poorly, and names like node-1/node-2 differ in few
// bits, so a murmur3 finaliser spreads the result over all 64 bits.
func score(seed uint64, k *ipKey) uint64 {
	h := fnvAdd(seed, k.b[:k.n])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
