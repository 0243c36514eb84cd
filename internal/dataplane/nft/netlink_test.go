package nft

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// TestEncoding: set definitions, their user data and element keys and
// values are the bytes nft 1.0.6 sends for the same declarations
// (captured with nft --debug=mnl on x86-64; user data and numgen's number
// are in host order, so the test needs a little-endian host).
func TestEncoding(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("captured on a little-endian host")
	}
	hexOf := func(b []byte) string { return hex.EncodeToString(b) }
	for _, tc := range []struct {
		name              string
		m                 mapDef
		keyType, dataType uint32
		keyLen, dataLen   uint32
		udata             string
	}{
		{"service-ips", verdictMap(false), 0x730d, 0xffffff00, 12, 0,
			"000400000000010400000000030800040d0000000100060400000000"},
		{"service-ips6", verdictMap(true), 0x830d, 0xffffff00, 24, 0,
			"000400000000010400000000030800040d0000000100060400000000"},
		{"backends4-tcp", backendsMap(false, forwarding.TCP), 0x7344, 0x1cd, 12, 8,
			"000400000000010400000000035000040d00000001480014000407000000010c00040c00000001040c000000011400" +
				"0407000000010c000408000000010402000000021a0004170000000112000401000000010402000000020400000000" +
				"043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c0004080000" +
				"00010402000000060400000000"},
		{"backends6-udp", backendsMap(true, forwarding.UDP), 0x8344, 0x20d, 24, 20,
			"000400000000010400000000035000040d00000001480014000407000000010c00040d000000010409000000011400" +
				"0407000000010c000406000000010402000000021a0004170000000112000401000000010402000000020400000000" +
				"043400040d000000012c0014000407000000010c00040d0000000104090000000114000407000000010c0004060000" +
				"00010402000000060400000000"},
	} {
		m := tc.m
		if m.name != tc.name || m.keyType != tc.keyType || m.dataType != tc.dataType || m.keyLen != tc.keyLen || m.dataLen != tc.dataLen {
			t.Errorf("%s: %+v, want key type %#x len %d, data type %#x len %d", tc.name, m, tc.keyType, tc.keyLen, tc.dataType, tc.dataLen)
		}
		if got := hexOf(m.udata); got != tc.udata {
			t.Errorf("%s user data\n got %s\nwant %s", tc.name, got, tc.udata)
		}
	}
	k := forwarding.Key{VIP: netip.MustParseAddr("192.0.2.1"), Protocol: forwarding.TCP, Port: 80}
	k6 := forwarding.Key{VIP: netip.MustParseAddr("2001:db8::1"), Protocol: forwarding.UDP, Port: 53}
	for _, tc := range []struct {
		what      string
		got, want []byte
	}{
		{"192.0.2.1 . tcp . 80", verdictKey(k), []byte{192, 0, 2, 1, 6, 0, 0, 0, 0, 80, 0, 0}},
		{"192.0.2.1 . 80 . 1", backendKey(k, 1), []byte{192, 0, 2, 1, 0, 80, 0, 0, 1, 0, 0, 0}},
		{"10.244.1.3 . 8080", addrPort(netip.MustParseAddrPort("10.244.1.3:8080")), []byte{10, 244, 1, 3, 0x1f, 0x90, 0, 0}},
		{"2001:db8::1 . 53 . 2", backendKey(k6, 2),
			[]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53, 0, 0, 2, 0, 0, 0}},
		{"fd00::3 . 5353", addrPort(netip.MustParseAddrPort("[fd00::3]:5353")),
			[]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x14, 0xe9, 0, 0}},
	} {
		if hexOf(tc.got) != hexOf(tc.want) {
			t.Errorf("%s: % x, want % x", tc.what, tc.got, tc.want)
		}
	}
}

// TestElementMessages: elements of one map and direction share messages,
// each message's element list stays within a netlink attribute's 64 KiB,
// and every element is one operation.
func TestElementMessages(t *testing.T) {
	rules := benchRules(3000, 10)
	want := map[forwarding.Key][]netip.AddrPort{}
	for _, r := range rules {
		want[r.Key] = r.Endpoints
	}
	tx := newNlTx(nil)
	(&Syncer{}).full(tx, want)
	tx.closeElems()
	// The fixed table, ten endpoint chains (1 to 10 endpoints) of a chain
	// and a rule each, and eleven elements per service.
	if want := 18 + 10*2 + 3000*11; tx.operations() != want {
		t.Errorf("%d operations, want %d", tx.operations(), want)
	}
	elemMsgs := 0
	for i, start := range tx.starts {
		end := len(tx.batch.b)
		if i+1 < len(tx.starts) {
			end = tx.starts[i+1]
		}
		length := int(binary.NativeEndian.Uint32(tx.batch.b[start:]))
		if length != end-start {
			t.Fatalf("message %d says %d bytes, spans %d", i, length, end-start)
		}
		if length > 65535 {
			t.Fatalf("a message of %d bytes", length)
		}
		if binary.NativeEndian.Uint16(tx.batch.b[start+4:])&0xff == 12 { // NFT_MSG_NEWSETELEM
			elemMsgs++
		}
	}
	// 30,000 backends of 40 bytes and 3,000 verdicts of 56: about 22
	// messages of 60 kB, not one per element or service.
	if elemMsgs > 30 {
		t.Errorf("%d element messages for 33,000 elements", elemMsgs)
	}
	t.Logf("%d messages, %d with elements", len(tx.starts), elemMsgs)
}
