package ipvs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// The attribute names of linux/ip_vs.h, to print a message as the kernel
// reads it.
var (
	cmdAttrNames  = map[uint16]string{1: "SERVICE", 2: "DEST"}
	svcAttrNames  = map[uint16]string{1: "AF", 2: "PROTOCOL", 3: "ADDR", 4: "PORT", 5: "FWMARK", 6: "SCHED_NAME", 7: "FLAGS", 8: "TIMEOUT", 9: "NETMASK", 10: "STATS", 11: "PE_NAME", 12: "STATS64"}
	destAttrNames = map[uint16]string{1: "ADDR", 2: "PORT", 3: "FWD_METHOD", 4: "WEIGHT", 5: "U_THRESH", 6: "L_THRESH", 7: "ACTIVE_CONNS", 8: "INACT_CONNS", 9: "PERSIST_CONNS", 10: "STATS", 11: "ADDR_FAMILY", 12: "STATS64"}
)

// render prints a request's attributes one per line, nested ones under
// their parent's name, values in hex as they are on the wire.
func render(t *testing.T, b []byte) []string {
	t.Helper()
	top, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range top {
		typ := a.Type &^ (netlink.Nested | netlink.NetByteOrder)
		names := svcAttrNames
		if typ == cmdAttrDest {
			names = destAttrNames
		}
		if a.Type&netlink.Nested == 0 {
			t.Errorf("attribute %s is not flagged nested", cmdAttrNames[typ])
		}
		inner, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range inner {
			out = append(out, fmt.Sprintf("%s.%s=%s", cmdAttrNames[typ], names[in.Type], hex.EncodeToString(in.Data)))
		}
	}
	return out
}

// u16 and u32 are host-order values in hex, as the kernel's nla_get_u16
// and nla_get_u32 read them.
func u16(v uint16) string { return hex.EncodeToString(binary.NativeEndian.AppendUint16(nil, v)) }
func u32(v uint32) string { return hex.EncodeToString(binary.NativeEndian.AppendUint32(nil, v)) }

// TestEncode checks each request against the layout in linux/ip_vs.h and
// what ip_vs_genl_parse_service/_dest require: family and protocol as
// u16, the address as 16 bytes (IPv4 first, zero padded), the port in
// network byte order, flags as {flags, mask}, netmask 0xffffffff or 128,
// and the forwarding method IP_VS_CONN_F_MASQ (0).
func TestEncode(t *testing.T) {
	v4 := Service{Key: key("192.0.2.1", forwarding.TCP, 80), Scheduler: "rr"}
	v6 := Service{Key: key("2001:db8::1", forwarding.UDP, 53), Scheduler: "mh", Flags: 0x8}
	sctp := Service{Key: key("198.51.100.7", forwarding.SCTP, 3868), Scheduler: "wrr"}
	d4 := Dest{AddrPort: netip.MustParseAddrPort("10.244.1.2:8080"), FwdMethod: FwdMasq, Weight: 1}
	d6 := Dest{AddrPort: netip.MustParseAddrPort("[fd00::2]:5353"), FwdMethod: FwdMasq, Weight: 1}

	const (
		addr4   = "c0000201000000000000000000000000"
		addr6   = "20010db8000000000000000000000001"
		port80  = "0050"
		port53  = "0035"
		ep4     = "0af40102000000000000000000000000"
		ep6     = "fd000000000000000000000000000002"
		port8k  = "1f90"
		port5k  = "14e9"
		maskAll = "ffffffff"
	)
	id4 := []string{"SERVICE.AF=" + u16(unix.AF_INET), "SERVICE.PROTOCOL=" + u16(6), "SERVICE.ADDR=" + addr4, "SERVICE.PORT=" + port80}
	id6 := []string{"SERVICE.AF=" + u16(unix.AF_INET6), "SERVICE.PROTOCOL=" + u16(17), "SERVICE.ADDR=" + addr6, "SERVICE.PORT=" + port53}
	full4 := append(slices.Clone(id4), "SERVICE.SCHED_NAME=727200", "SERVICE.FLAGS="+u32(0)+maskAll, "SERVICE.TIMEOUT="+u32(0), "SERVICE.NETMASK="+maskAll)
	full6 := append(slices.Clone(id6), "SERVICE.SCHED_NAME=6d6800", "SERVICE.FLAGS="+u32(8)+maskAll, "SERVICE.TIMEOUT="+u32(0), "SERVICE.NETMASK="+u32(128))
	dest4 := []string{"DEST.ADDR=" + ep4, "DEST.PORT=" + port8k, "DEST.ADDR_FAMILY=" + u16(unix.AF_INET)}
	dest6 := []string{"DEST.ADDR=" + ep6, "DEST.PORT=" + port5k, "DEST.ADDR_FAMILY=" + u16(unix.AF_INET6)}
	destFull := []string{"DEST.FWD_METHOD=" + u32(0), "DEST.WEIGHT=" + u32(1), "DEST.U_THRESH=" + u32(0), "DEST.L_THRESH=" + u32(0)}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }

	for _, tc := range []struct {
		op    Op
		cmd   uint8
		attrs []string
	}{
		{Op{Kind: AddService, Service: v4}, 1, full4},                               // IPVS_CMD_NEW_SERVICE
		{Op{Kind: UpdateService, Service: v6}, 2, full6},                            // IPVS_CMD_SET_SERVICE
		{Op{Kind: DeleteService, Service: v4}, 3, id4},                              // IPVS_CMD_DEL_SERVICE
		{Op{Kind: AddDest, Service: v4, Dest: d4}, 5, cat(id4, dest4, destFull)},    // IPVS_CMD_NEW_DEST
		{Op{Kind: UpdateDest, Service: v6, Dest: d6}, 6, cat(id6, dest6, destFull)}, // IPVS_CMD_SET_DEST
		{Op{Kind: DeleteDest, Service: v4, Dest: d4}, 7, cat(id4, dest4)},           // IPVS_CMD_DEL_DEST
		{Op{Kind: AddService, Service: sctp}, 1, []string{"SERVICE.AF=" + u16(unix.AF_INET), "SERVICE.PROTOCOL=" + u16(132), "SERVICE.ADDR=c6336407000000000000000000000000", "SERVICE.PORT=0f1c", "SERVICE.SCHED_NAME=77727200", "SERVICE.FLAGS=" + u32(0) + maskAll, "SERVICE.TIMEOUT=" + u32(0), "SERVICE.NETMASK=" + maskAll}},
	} {
		t.Run(tc.op.String(), func(t *testing.T) {
			cmd, b, err := encodeOp(tc.op)
			if err != nil {
				t.Fatal(err)
			}
			if cmd != tc.cmd {
				t.Errorf("command %d, want %d", cmd, tc.cmd)
			}
			if got := render(t, b); !slices.Equal(got, tc.attrs) {
				t.Errorf("attributes:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.attrs, "\n     "))
			}
		})
	}
}

func TestEncodeInvalid(t *testing.T) {
	v4 := Service{Key: key("192.0.2.1", forwarding.TCP, 80), Scheduler: "rr"}
	for _, op := range []Op{
		{Kind: AddService},
		{Kind: AddService, Service: Service{Key: key("192.0.2.1", "icmp", 0)}},
		{Kind: AddService, Service: Service{Key: key("::ffff:192.0.2.1", forwarding.TCP, 80)}},
		{Kind: AddService, Service: Service{Key: v4.Key, Scheduler: "a-scheduler-name-too-long"}},
		{Kind: AddDest, Service: v4, Dest: Dest{AddrPort: netip.MustParseAddrPort("[fd00::1]:80")}},
		{Kind: AddDest, Service: v4},
		{Kind: OpKind(99), Service: v4},
	} {
		if _, _, err := encodeOp(op); err == nil {
			t.Errorf("%s: encoded", op)
		} else if op.Kind != 99 && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", op, err)
		}
	}
}

var testFamily = genetlink.Family{ID: 0x23, Name: familyName, Version: familyVersion}

// kernelService encodes a service as the kernel's ip_vs_genl_fill_service
// does, with statistics the decoder must skip.
func kernelService(t *testing.T, s Service, fwmark uint32) genetlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrService, func(nae *netlink.AttributeEncoder) error {
		if fwmark != 0 {
			nae.Uint16(svcAttrAF, unix.AF_INET)
			nae.Uint32(svcAttrFwmark, fwmark)
		} else {
			serviceAttrs(nae, s, false)
		}
		nae.String(svcAttrSchedName, s.Scheduler)
		flags := make([]byte, 8)
		binary.NativeEndian.PutUint32(flags, s.Flags|flagHashed)
		binary.NativeEndian.PutUint32(flags[4:], ^uint32(0))
		nae.Bytes(svcAttrFlags, flags)
		nae.Uint32(svcAttrTimeout, 0)
		nae.Uint32(svcAttrNetmask, 0xffffffff)
		nae.Nested(10, func(st *netlink.AttributeEncoder) error { st.Uint32(1, 42); return nil })
		nae.Nested(12, func(st *netlink.AttributeEncoder) error { st.Uint64(1, 42); return nil })
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return genetlink.Message{Header: genetlink.Header{Command: cmdNewService, Version: familyVersion}, Data: b}
}

func kernelDest(t *testing.T, d Dest) genetlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDest, func(nae *netlink.AttributeEncoder) error {
		destAttrs(nae, d, true)
		nae.Uint32(7, 3) // ACTIVE_CONNS
		nae.Uint32(8, 1) // INACT_CONNS
		nae.Nested(10, func(st *netlink.AttributeEncoder) error { st.Uint32(1, 42); return nil })
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return genetlink.Message{Header: genetlink.Header{Command: cmdNewDest, Version: familyVersion}, Data: b}
}

// TestClient drives Client over genltest: family resolution, the header
// of each request (family ID, command, version, flags) and the decoding
// of kernel-shaped dump replies.
func TestClient(t *testing.T) {
	a := Service{Key: key("192.0.2.1", forwarding.TCP, 80), Scheduler: "rr"}
	b := Service{Key: key("2001:db8::1", forwarding.SCTP, 9), Scheduler: "mh", Flags: 0x8}
	d1 := Dest{AddrPort: netip.MustParseAddrPort("10.244.1.3:8080"), Weight: 1}
	d2 := Dest{AddrPort: netip.MustParseAddrPort("10.244.1.2:8080"), Weight: 5, FwdMethod: 3}

	type req struct {
		cmd   uint8
		flags netlink.HeaderFlags
		attrs []string
	}
	var reqs []req
	conn := genltest.Dial(genltest.ServeFamily(testFamily, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		if nreq.Header.Type != netlink.HeaderType(testFamily.ID) {
			t.Errorf("request to family %d, want %d", nreq.Header.Type, testFamily.ID)
		}
		if greq.Header.Version != familyVersion {
			t.Errorf("version %d, want %d", greq.Header.Version, familyVersion)
		}
		reqs = append(reqs, req{greq.Header.Command, nreq.Header.Flags, render(t, greq.Data)})
		switch greq.Header.Command {
		case cmdGetService:
			return []genetlink.Message{kernelService(t, b, 0), kernelService(t, Service{Scheduler: "rr"}, 7), kernelService(t, a, 0)}, nil
		case cmdGetDest:
			return []genetlink.Message{kernelDest(t, d1), kernelDest(t, d2)}, nil
		case cmdNewService:
			return nil, genltest.Error(int(unix.EEXIST))
		}
		return []genetlink.Message{{}}, nil
	}))
	c, err := NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	svcs, err := c.Services()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Service{a, b}; !equalServices(svcs, want) {
		t.Errorf("Services: %v, want %v (sorted, firewall-mark service left out, HASHED dropped)", svcs, want)
	}
	dests, err := c.Dests(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Dest{d2, d1}; !slices.Equal(dests, want) {
		t.Errorf("Dests: %v, want %v", dests, want)
	}
	if err := c.Apply(Op{Kind: DeleteDest, Service: a, Dest: d1}); err != nil {
		t.Fatal(err)
	}
	err = c.Apply(Op{Kind: AddService, Service: a})
	if err == nil || !strings.Contains(err.Error(), "add service tcp 192.0.2.1:80") {
		t.Errorf("a kernel error should name the op: %v", err)
	}

	id := []string{"SERVICE.AF=" + u16(unix.AF_INET), "SERVICE.PROTOCOL=" + u16(6), "SERVICE.ADDR=c0000201000000000000000000000000", "SERVICE.PORT=0050"}
	want := []req{
		{cmdGetService, netlink.Request | netlink.Acknowledge | netlink.Dump, nil},
		{cmdGetDest, netlink.Request | netlink.Acknowledge | netlink.Dump, id},
		{cmdDelDest, netlink.Request | netlink.Acknowledge, append(slices.Clone(id), "DEST.ADDR=0af40103000000000000000000000000", "DEST.PORT=1f90", "DEST.ADDR_FAMILY="+u16(unix.AF_INET))},
		{cmdNewService, netlink.Request | netlink.Acknowledge, nil},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests, want %d: %v", len(reqs), len(want), reqs)
	}
	for i, w := range want {
		g := reqs[i]
		if g.cmd != w.cmd || g.flags != w.flags || (w.attrs != nil && !slices.Equal(g.attrs, w.attrs)) {
			t.Errorf("request %d: %+v, want %+v", i, g, w)
		}
	}
}

func TestNewClientNoIPVS(t *testing.T) {
	conn := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	})
	if _, err := NewClient(conn); err == nil || !strings.Contains(err.Error(), "ip_vs") {
		t.Errorf("want an error that names the ip_vs module, got %v", err)
	}
}
