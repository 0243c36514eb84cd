package pool

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in          string
		first, last string
		err         string // substring of the error; "" = success
	}{
		{in: "192.168.10.0/24", first: "192.168.10.0", last: "192.168.10.255"},
		{in: "192.168.10.77/24", first: "192.168.10.0", last: "192.168.10.255"}, // host bits masked
		{in: " 10.0.0.1/32 ", first: "10.0.0.1", last: "10.0.0.1"},
		{in: "0.0.0.0/0", first: "0.0.0.0", last: "255.255.255.255"},
		{in: "fd00::/120", first: "fd00::", last: "fd00::ff"},
		{in: "fd00::1234/64", first: "fd00::", last: "fd00::ffff:ffff:ffff:ffff"},
		{in: "::/0", first: "::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{in: "2001:db8::/65", first: "2001:db8::", last: "2001:db8::7fff:ffff:ffff:ffff"},
		{in: "10.0.0.1-10.0.0.9", first: "10.0.0.1", last: "10.0.0.9"},
		{in: "10.0.0.1 - 10.0.0.1", first: "10.0.0.1", last: "10.0.0.1"},
		{in: "fd00::1-fd00::ff", first: "fd00::1", last: "fd00::ff"},
		// IPv4-mapped forms are unmapped, consistently for CIDRs and ranges.
		{in: "::ffff:10.0.0.0/120", first: "10.0.0.0", last: "10.0.0.255"},
		{in: "::ffff:10.0.0.1-10.0.0.3", first: "10.0.0.1", last: "10.0.0.3"},
		{in: "::ffff:0:0/95", err: "spans both families"},
		{in: "", err: "empty"},
		{in: "   ", err: "empty"},
		{in: "10.0.0.1", err: "neither a CIDR nor a range"},
		{in: "10.0.0.0/33", err: "not a valid CIDR"},
		{in: "10.0.0.300/24", err: "not a valid CIDR"},
		{in: "10.0.0.9-10.0.0.1", err: "is after last"},
		{in: "10.0.0.1-fd00::1", err: "different families"},
		{in: "10.0.0.1-", err: "missing address"},
		{in: "-10.0.0.1", err: "missing address"},
		{in: "10.0.0.1-10.0.0.x", err: `"10.0.0.x" is not an IP address`},
		{in: "fe80::1%eth0-fe80::2", err: "zone"},
		{in: "10.0.0.1-10.0.0.2-10.0.0.3", err: "is not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := Parse(tt.in)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error containing %q", tt.in, r, tt.err)
				}
				if !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.in) {
					t.Fatalf("Parse(%q) error %q, want it to name the input and contain %q", tt.in, err, tt.err)
				}
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is not a *ParseError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			want := Range{netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)}
			if r != want {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, r, want)
			}
		})
	}
}

func TestParseAllNamesIndex(t *testing.T) {
	rs, err := ParseAll([]string{"10.0.0.0/30", "fd00::/127"})
	if err != nil || len(rs) != 2 {
		t.Fatalf("ParseAll = %v, %v", rs, err)
	}
	_, err = ParseAll([]string{"10.0.0.0/30", "bogus"})
	if err == nil || !strings.Contains(err.Error(), "addresses[1]") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("ParseAll error = %v, want it to name addresses[1] and the input", err)
	}
}

func TestSizeAndContains(t *testing.T) {
	tests := []struct {
		in              string
		size            string
		u64             uint64
		i64             int64
		inside, outside []string
	}{
		{"10.0.0.0/24", "256", 256, 256, []string{"10.0.0.0", "10.0.0.255", "::ffff:10.0.0.7"}, []string{"10.0.1.0", "9.255.255.255", "fd00::"}},
		{"10.0.0.5-10.0.0.5", "1", 1, 1, []string{"10.0.0.5"}, []string{"10.0.0.4", "10.0.0.6"}},
		{"fd00::/64", "18446744073709551616", math.MaxUint64, math.MaxInt64, []string{"fd00::", "fd00::ffff:ffff:ffff:ffff"}, []string{"fd00:0:0:1::", "10.0.0.1"}},
		{"fd00::/65", "9223372036854775808", 1 << 63, math.MaxInt64, []string{"fd00::1"}, []string{"fd00::8000:0:0:0"}},
		{"fd00::/66", "4611686018427387904", 1 << 62, 1 << 62, nil, nil},
		// ::/0 has 2^128 addresses, one more than 128 bits hold: it saturates.
		{"::/0", "340282366920938463463374607431768211455", math.MaxUint64, math.MaxInt64, []string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"0.0.0.0"}},
		{"::/1", "170141183460469231731687303715884105728", math.MaxUint64, math.MaxInt64, nil, nil},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		s := r.Size()
		if s.String() != tt.size || s.Uint64() != tt.u64 || s.Int64() != tt.i64 {
			t.Errorf("%s: size %s/%d/%d, want %s/%d/%d", tt.in, s, s.Uint64(), s.Int64(), tt.size, tt.u64, tt.i64)
		}
		for _, a := range tt.inside {
			if !r.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%s should contain %s", tt.in, a)
			}
		}
		for _, a := range tt.outside {
			if r.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%s should not contain %s", tt.in, a)
			}
		}
	}
	if (Range{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("zero Range contains an address")
	}
}

func TestUint128(t *testing.T) {
	one := Uint128{Lo: 1}
	if v, over := MaxUint128.Inc(); !over || !v.IsZero() {
		t.Errorf("Max.Inc = %v, %v", v, over)
	}
	if v, under := (Uint128{}).Dec(); !under || v != MaxUint128 {
		t.Errorf("0.Dec = %v, %v", v, under)
	}
	if v, _ := (Uint128{Lo: math.MaxUint64}).Inc(); v != (Uint128{Hi: 1}) {
		t.Errorf("carry: %v", v)
	}
	if v := MaxUint128.Add(one); v != MaxUint128 {
		t.Errorf("Add saturates: %v", v)
	}
	if v := one.Sub(Uint128{Lo: 2}); !v.IsZero() {
		t.Errorf("Sub saturates: %v", v)
	}
	if (Uint128{Hi: 1}).Cmp(Uint128{Lo: math.MaxUint64}) != 1 || one.Cmp(one) != 0 {
		t.Error("Cmp")
	}
	for _, s := range []string{"0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "::1", "fd00::1:2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		a := netip.MustParseAddr(s)
		if b := AddrFromValue(AddrValue(a), a.Is4()); b != a {
			t.Errorf("round trip %s -> %s", a, b)
		}
	}
}

func TestOverlap(t *testing.T) {
	p := func(s string) Range { r, _ := Parse(s); return r }
	tests := []struct {
		a, b string
		want string // "" = none
	}{
		{"10.0.0.0/24", "10.0.0.128/25", "10.0.0.128-10.0.0.255"},
		{"10.0.0.0-10.0.0.10", "10.0.0.10-10.0.0.20", "10.0.0.10-10.0.0.10"},
		{"10.0.0.0-10.0.0.9", "10.0.0.10-10.0.0.20", ""},
		{"10.0.0.0/8", "fd00::/8", ""},
		{"::/0", "fd00::/120", "fd00::-fd00::ff"},
	}
	for _, tt := range tests {
		for _, swap := range []bool{false, true} {
			a, b := p(tt.a), p(tt.b)
			if swap {
				a, b = b, a
			}
			r, ok := Overlap(a, b)
			got := ""
			if ok {
				got = r.String()
			}
			if got != tt.want {
				t.Errorf("Overlap(%v, %v) = %q, want %q", a, b, got, tt.want)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"192.168.10.0/24", "10.0.0.1-10.0.0.9", "fd00::/120", "::/0", "0.0.0.0/0",
		"::ffff:10.0.0.0/120", "::ffff:1.2.3.4-1.2.3.5", " fd00::1 - fd00::2 ", "10.0.0.1", "1-2", "/", "-", "fe80::1%eth0/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid address range") {
				t.Fatalf("error does not say what it is: %v", err)
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() {
			t.Fatalf("%q: invalid bounds %v", s, r)
		}
		if r.First.Is4() != r.Last.Is4() || r.First.Is4In6() || r.Last.Is4In6() || r.First.Zone() != "" {
			t.Fatalf("%q: mixed, mapped or zoned bounds %v", s, r)
		}
		if r.Last.Less(r.First) {
			t.Fatalf("%q: First > Last: %v", s, r)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%q: %v does not contain its bounds", s, r)
		}
		if p := r.First.Prev(); p.IsValid() && r.Contains(p) {
			t.Fatalf("%q: %v contains %s", s, r, p)
		}
		if n := r.Last.Next(); n.IsValid() && r.Contains(n) {
			t.Fatalf("%q: %v contains %s", s, r, n)
		}
		// Round trip through the range form.
		r2, err := Parse(r.String())
		if err != nil || r2 != r {
			t.Fatalf("%q: round trip of %v gave %v, %v", s, r, r2, err)
		}
		if r.Span().Add(Uint128{Lo: 1}) != r.Size() {
			t.Fatalf("%q: size %v != span+1 %v", s, r.Size(), r.Span())
		}
		if o, ok := Overlap(r, r); !ok || o != r {
			t.Fatalf("%q: self overlap %v %v", s, o, ok)
		}
	})
}
