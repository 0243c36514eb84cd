package pool

import (
	"fmt"
	"net/netip"
	"strings"
)

// Range is an inclusive range of addresses of one family. Parse never
// returns IPv4-mapped IPv6 addresses: they are unmapped to IPv4 so that
// "::ffff:10.0.0.1" and "10.0.0.1" are the same address everywhere.
type Range struct{ First, Last netip.Addr }

// ParseError says which pool entry could not be parsed and why.
type ParseError struct {
	Input string // the entry as given
	Msg   string // what is wrong with it
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid address range %q: %s", e.Input, e.Msg)
}

func parseErr(s, format string, args ...any) error {
	return &ParseError{Input: s, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses one entry of IPAddressPool.spec.addresses: a CIDR, whose host
// bits are masked off as net.ParseCIDR does, or a range "first-last" with
// optional spaces around either address.
func Parse(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, parseErr(s, "empty")
	}
	if strings.Contains(t, "/") {
		return parseCIDR(s, t)
	}
	first, last, ok := strings.Cut(t, "-")
	if !ok {
		return Range{}, parseErr(s, "neither a CIDR nor a range; write a single address as a /32 or /128")
	}
	a, err := parseAddr(s, strings.TrimSpace(first))
	if err != nil {
		return Range{}, err
	}
	b, err := parseAddr(s, strings.TrimSpace(last))
	if err != nil {
		return Range{}, err
	}
	if a.Is4() != b.Is4() {
		return Range{}, parseErr(s, "%s and %s are of different families", a, b)
	}
	if b.Less(a) {
		return Range{}, parseErr(s, "first address %s is after last address %s", a, b)
	}
	return Range{a, b}, nil
}

func parseAddr(s, part string) (netip.Addr, error) {
	if part == "" {
		return netip.Addr{}, parseErr(s, "missing address")
	}
	a, err := netip.ParseAddr(part)
	if err != nil {
		return netip.Addr{}, parseErr(s, "%q is not an IP address", part)
	}
	if a.Zone() != "" {
		return netip.Addr{}, parseErr(s, "%q has a zone, which a pool address cannot have", part)
	}
	return a.Unmap(), nil
}

func parseCIDR(s, t string) (Range, error) {
	p, err := netip.ParsePrefix(t)
	if err != nil {
		return Range{}, parseErr(s, "not a valid CIDR")
	}
	addr, bits := p.Addr(), p.Bits()
	if addr.Is4In6() {
		// A mapped prefix is the same IPv4 prefix only when it stays inside
		// ::ffff:0:0/96; a shorter one would mix families.
		if bits < 96 {
			return Range{}, parseErr(s, "IPv4-mapped prefix shorter than /96 spans both families")
		}
		p = netip.PrefixFrom(addr.Unmap(), bits-96)
	}
	p = p.Masked()
	return prefixRange(p), nil
}

// prefixRange returns the first and last address of a masked prefix.
func prefixRange(p netip.Prefix) Range {
	first := p.Addr()
	width := 128
	if first.Is4() {
		width = 32
	}
	hostBits := width - p.Bits()
	v := AddrValue(first)
	// Set the low hostBits bits.
	switch {
	case hostBits >= 64:
		v.Lo = ^uint64(0)
		if hostBits == 128 {
			v.Hi = ^uint64(0)
		} else if hostBits > 64 {
			v.Hi |= (uint64(1) << (hostBits - 64)) - 1
		}
	case hostBits > 0:
		v.Lo |= (uint64(1) << hostBits) - 1
	}
	return Range{First: first, Last: AddrFromValue(v, first.Is4())}
}

// ParseAll parses every entry of spec.addresses; the error names the index
// of the first bad entry.
func ParseAll(ss []string) ([]Range, error) {
	out := make([]Range, 0, len(ss))
	for i, s := range ss {
		r, err := Parse(s)
		if err != nil {
			return nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Contains reports whether a lies in r; an IPv4-mapped a is unmapped first,
// as Parse does.
func (r Range) Contains(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !r.First.IsValid() || a.Is4() != r.First.Is4() {
		return false
	}
	return r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Is4 reports whether r is an IPv4 range.
func (r Range) Is4() bool { return r.First.Is4() }

// Span returns Last-First, which is exact for every range including ::/0.
func (r Range) Span() Uint128 {
	return AddrValue(r.Last).Sub(AddrValue(r.First))
}

// Size returns the number of addresses in r. Only ::/0 (2^128 addresses)
// does not fit, and it saturates at MaxUint128.
func (r Range) Size() Uint128 {
	return r.Span().Add(Uint128{Lo: 1})
}

// String formats r as "first-last".
func (r Range) String() string {
	return r.First.String() + "-" + r.Last.String()
}

// Overlap returns the addresses common to a and b, if there are any.
func Overlap(a, b Range) (Range, bool) {
	if !a.First.IsValid() || !b.First.IsValid() || a.Is4() != b.Is4() {
		return Range{}, false
	}
	first, last := a.First, a.Last
	if b.First.Compare(first) > 0 {
		first = b.First
	}
	if b.Last.Compare(last) < 0 {
		last = b.Last
	}
	if first.Compare(last) > 0 {
		return Range{}, false
	}
	return Range{first, last}, true
}
