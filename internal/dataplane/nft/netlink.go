package nft

// The netlink path. New's Syncer encodes each transaction as one
// nfnetlink batch (BATCH_BEGIN, the messages, BATCH_END) and sends it in
// one sendmsg; the kernel applies a batch atomically, all or nothing, as
// it does for `nft -f`. This replaced knftables + nft for the kernel: at
// 10,000 services of 10 endpoints nft spent about 1 s of CPU parsing and
// evaluating 110,000 `add element` lines (about half that when batched
// into one `add element` per map) and peaked at 375 MB, where encoding
// the messages here takes tens of milliseconds.
//
// The messages are built here rather than with google/nftables' Conn:
// v0.3.0 cannot attach user data to a set or a table, and without the
// typeof user data nft prints a backends map's key as "... . integer",
// which it cannot read back. Rule expressions are marshalled by
// google/nftables/expr; the socket is mdlayher/netlink's. The messages
// carry the same attributes as nft 1.0.6's own (compared with
// `nft --debug=mnl`), so `nft list table inet ironlb` prints the table the
// knftables path writes, and reads its own output back (TestKernel checks
// both).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ironlb/ironlb/internal/forwarding"
)

const (
	// nftaTableUserdata is NFTA_TABLE_USERDATA (missing from x/sys/unix).
	nftaTableUserdata = 6
	nfAccept          = 1
	// elemsPerMessage bounds the bytes of elements in one NEWSETELEM or
	// DELSETELEM message: they sit in one attribute, whose length is 16
	// bits. An element is at most about 100 bytes.
	elemsPerMessage = 60000
)

// nlTx is a transaction as nfnetlink messages, sent by run.
type nlTx struct {
	k *kernel
	// batch is the batch as the kernel reads it, written in place: a
	// BATCH_BEGIN message, then the transaction's messages (run adds
	// BATCH_END). Built message by message and then copied together (as
	// netlink.Conn.SendMessages does), a full sync's 4.6 MB at 10,000
	// services would be made about three times over.
	batch attrs
	// starts are the offsets of the transaction's messages in batch; the
	// last one's length is set by done.
	starts []int
	ops    int
	// elems says the last message is an element message that further
	// elements of the same set and direction join.
	elems     bool
	elemsType uint16
	elemsSet  string
	elemsList int // offset of the open NFTA_SET_ELEM_LIST_ELEMENTS
	// setIDs numbers the sets added in this transaction.
	setIDs uint32
	err    error
}

func newNlTx(k *kernel) *nlTx {
	t := &nlTx{k: k}
	t.batchMsg(unix.NFNL_MSG_BATCH_BEGIN)
	return t
}

// batchMsg appends a BATCH_BEGIN or BATCH_END message for nf_tables.
func (t *nlTx) batchMsg(typ uint16) {
	start := len(t.batch.b)
	t.header(typ, netlink.Request)
	t.batch.b = append(t.batch.b, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
	t.setLength(start)
}

// header appends a netlink message header, its length left to setLength
// and its sequence number to the kernel's send.
func (t *nlTx) header(typ uint16, flags netlink.HeaderFlags) {
	b := t.batch.b
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, uint16(flags))
	t.batch.b = append(b, make([]byte, 8)...)
}

// setLength makes the message at start end where the batch ends now.
func (t *nlTx) setLength(start int) {
	binary.NativeEndian.PutUint32(t.batch.b[start:], uint32(len(t.batch.b)-start))
}

func (t *nlTx) operations() int { return t.ops }

// msg starts a message of type typ (NFT_MSG_*) for family inet.
func (t *nlTx) msg(typ uint16, flags netlink.HeaderFlags) *attrs {
	t.closeElems()
	t.starts = append(t.starts, len(t.batch.b))
	t.header(unix.NFNL_SUBSYS_NFTABLES<<8|typ, netlink.Request|flags)
	t.batch.b = append(t.batch.b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	return &t.batch
}

// done ends the last message where the batch ends.
func (t *nlTx) done(*attrs) { t.setLength(t.starts[len(t.starts)-1]) }

func (t *nlTx) table(typ uint16, flags netlink.HeaderFlags, comment string) {
	a := t.msg(typ, flags)
	a.str(unix.NFTA_TABLE_NAME, Table)
	if typ == unix.NFT_MSG_NEWTABLE {
		a.u32(unix.NFTA_TABLE_FLAGS, 0)
		if comment != "" {
			// NFTNL_UDATA_TABLE_COMMENT, as nft writes it.
			a.bytes(nftaTableUserdata, udataString(nil, 0, comment))
		}
	}
	t.done(a)
	t.ops++
}

func (t *nlTx) replaceTable() {
	t.table(unix.NFT_MSG_NEWTABLE, netlink.Create, comment)
	t.table(unix.NFT_MSG_DELTABLE, 0, "")
	t.table(unix.NFT_MSG_NEWTABLE, netlink.Create, comment)
	t.set(verdictMap(false))
	t.set(verdictMap(true))
	for _, v6 := range []bool{false, true} {
		for _, p := range protocols {
			t.set(backendsMap(v6, p))
		}
	}
	t.chain(chainServices, nil)
	t.rule(chainServices, servicesRule(false))
	t.rule(chainServices, servicesRule(true))
	for _, h := range hooks {
		t.chain(h.name, &h)
		t.rule(h.name, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices}})
	}
}

func (t *nlTx) deleteTable() {
	t.table(unix.NFT_MSG_NEWTABLE, netlink.Create, "")
	t.table(unix.NFT_MSG_DELTABLE, 0, "")
}

// mapDef is a named map of the table as NEWSET says it.
type mapDef struct {
	name              string
	keyType, keyLen   uint32
	dataType, dataLen uint32
	udata             []byte
}

func (t *nlTx) set(m mapDef) {
	t.setIDs++
	a := t.msg(unix.NFT_MSG_NEWSET, netlink.Create)
	a.str(unix.NFTA_SET_TABLE, Table)
	a.str(unix.NFTA_SET_NAME, m.name)
	a.u32(unix.NFTA_SET_FLAGS, unix.NFT_SET_MAP)
	a.u32(unix.NFTA_SET_KEY_TYPE, m.keyType)
	a.u32(unix.NFTA_SET_KEY_LEN, m.keyLen)
	a.u32(unix.NFTA_SET_DATA_TYPE, m.dataType)
	a.u32(unix.NFTA_SET_DATA_LEN, m.dataLen)
	a.u32(unix.NFTA_SET_ID, t.setIDs)
	a.bytes(unix.NFTA_SET_USERDATA, m.udata)
	t.done(a)
	t.ops++
}

// chain adds a chain, a base chain when h is set.
func (t *nlTx) chain(name string, h *hook) {
	a := t.msg(unix.NFT_MSG_NEWCHAIN, netlink.Create)
	a.str(unix.NFTA_CHAIN_TABLE, Table)
	a.str(unix.NFTA_CHAIN_NAME, name)
	if h != nil {
		a.str(unix.NFTA_CHAIN_TYPE, "nat")
		a.u32(unix.NFTA_CHAIN_POLICY, nfAccept)
		n := a.nest(unix.NFTA_CHAIN_HOOK)
		a.u32(unix.NFTA_HOOK_HOOKNUM, h.num)
		prio := int32(priority)
		a.u32(unix.NFTA_HOOK_PRIORITY, uint32(prio))
		a.end(n)
	}
	t.done(a)
	t.ops++
}

func (t *nlTx) rule(chain string, exprs []expr.Any) {
	a := t.msg(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append)
	a.str(unix.NFTA_RULE_TABLE, Table)
	a.str(unix.NFTA_RULE_CHAIN, chain)
	list := a.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			t.err = errors.Join(t.err, fmt.Errorf("rule in chain %s: %w", chain, err))
		}
		elem := a.nest(unix.NFTA_LIST_ELEM)
		a.b = append(a.b, b...)
		a.end(elem)
	}
	a.end(list)
	t.done(a)
	t.ops++
}

func (t *nlTx) addChain(e eps) {
	t.chain(e.name(), nil)
	t.rule(e.name(), dnatExprs(e))
}

func (t *nlTx) addVerdict(k forwarding.Key, n int) {
	t.element(unix.NFT_MSG_NEWSETELEM, verdictMapName(k), verdictKey(k), nil, epsOf(k, n).name())
}

func (t *nlTx) deleteVerdict(k forwarding.Key, n int) {
	t.element(unix.NFT_MSG_DELSETELEM, verdictMapName(k), verdictKey(k), nil, "")
}

func (t *nlTx) addBackend(k forwarding.Key, i int, ep netip.AddrPort) {
	t.element(unix.NFT_MSG_NEWSETELEM, backends(k.VIP.Is6(), k.Protocol), backendKey(k, i), addrPort(ep), "")
}

func (t *nlTx) deleteBackend(k forwarding.Key, i int, _ netip.AddrPort) {
	t.element(unix.NFT_MSG_DELSETELEM, backends(k.VIP.Is6(), k.Protocol), backendKey(k, i), nil, "")
}

// element queues one element into the open element message when it is of
// the same set and direction and has room, else into a new one. An element
// carries a value, or a goto to chain, or (deleted) only its key.
func (t *nlTx) element(typ uint16, set string, key, value []byte, chain string) {
	t.ops++
	if !t.elems || t.elemsType != typ || t.elemsSet != set || len(t.batch.b)-t.elemsList > elemsPerMessage {
		flags := netlink.HeaderFlags(0)
		if typ == unix.NFT_MSG_NEWSETELEM {
			flags = netlink.Create
		}
		a := t.msg(typ, flags)
		a.str(unix.NFTA_SET_ELEM_LIST_TABLE, Table)
		a.str(unix.NFTA_SET_ELEM_LIST_SET, set)
		t.elems, t.elemsType, t.elemsSet = true, typ, set
		t.elemsList = a.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	}
	a := &t.batch
	e := a.nest(unix.NFTA_LIST_ELEM)
	k := a.nest(unix.NFTA_SET_ELEM_KEY)
	a.bytes(unix.NFTA_DATA_VALUE, key)
	a.end(k)
	switch {
	case value != nil:
		d := a.nest(unix.NFTA_SET_ELEM_DATA)
		a.bytes(unix.NFTA_DATA_VALUE, value)
		a.end(d)
	case chain != "":
		d := a.nest(unix.NFTA_SET_ELEM_DATA)
		v := a.nest(unix.NFTA_DATA_VERDICT)
		code := int32(unix.NFT_GOTO)
		a.u32(unix.NFTA_VERDICT_CODE, uint32(code))
		a.str(unix.NFTA_VERDICT_CHAIN, chain)
		a.end(v)
		a.end(d)
	}
	a.end(e)
}

// closeElems finishes the open element message, if any.
func (t *nlTx) closeElems() {
	if !t.elems {
		return
	}
	t.batch.end(t.elemsList)
	t.done(&t.batch)
	t.elems = false
}

// run sends the transaction as one batch (see kernel.send).
func (t *nlTx) run(ctx context.Context) error {
	t.closeElems()
	if t.err != nil {
		return t.err
	}
	if len(t.starts) == 0 {
		return nil
	}
	t.batchMsg(unix.NFNL_MSG_BATCH_END)
	return t.k.send(ctx, t.batch.b, t.starts)
}

// kernel is New's two netlink sockets, kept open from one sync to the
// next: closing a socket that committed a transaction waits for nf_tables
// to free what the transaction replaced (an RCU grace period, about 10 ms
// on a busy machine), which was a third of a one-endpoint change. Either
// socket is dropped after an error and opened again on next use.
type kernel struct {
	// conn sends transactions.
	conn *netlink.Conn
	// seq numbers the messages of every batch on conn, never reused, so
	// no reply is taken for another batch's.
	seq uint32
	// read counts rules.
	read *nftables.Conn
}

// send sends msgs as one batch and waits for the kernel's answer: only
// the last message asks for an acknowledgement, and the kernel reports
// every failing message, so the first error or that one acknowledgement
// ends the wait. ctx's cancellation or deadline ends it too.
// sendBatch writes b to the kernel in one sendto.
func sendBatch(c *netlink.Conn, b []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	// The socket is non-blocking: on EAGAIN the poller waits (within the
	// connection's deadline) and calls again.
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	return serr
}

// send sends batch, a BATCH_BEGIN message, the messages at starts and a
// BATCH_END message, numbering them all and asking the kernel to
// acknowledge the last of starts, and waits for that acknowledgement.
func (k *kernel) send(ctx context.Context, batch []byte, starts []int) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.conn == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		// A failing message's error without the message echoed back.
		_ = c.SetOption(netlink.CapAcknowledge, true)
		_ = c.SetOption(netlink.ExtendedAcknowledge, true)
		k.conn = c
	}
	c := k.conn
	defer func() {
		if err != nil {
			_ = c.Close()
			k.conn = nil
		}
	}()
	// Every message gets a sequence number: walk them by their lengths.
	var last uint32
	for off := 0; off < len(batch); off += int(binary.NativeEndian.Uint32(batch[off:])) {
		k.seq++
		if k.seq == 0 {
			k.seq++
		}
		binary.NativeEndian.PutUint32(batch[off+8:], k.seq)
		if off == starts[len(starts)-1] {
			last = k.seq
			flags := binary.NativeEndian.Uint16(batch[off+6:])
			binary.NativeEndian.PutUint16(batch[off+6:], flags|uint16(netlink.Acknowledge))
		}
	}
	size, n := len(batch), len(starts)+2
	// The batch goes in one sendmsg, which must fit the send buffer:
	// megabytes at 10,000 services. nft raises it the same way.
	if err := setSockopt(c, unix.SO_SNDBUFFORCE, size+(64<<10)); err != nil {
		return fmt.Errorf("netlink send buffer of %d bytes: %w", size, err)
	}
	// No deadline left over from a previous sync's ctx.
	if err := c.SetDeadline(time.Time{}); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := sendBatch(c, batch); err != nil {
		return fmt.Errorf("sending %d nftables messages (%d bytes): %w", n, size, ctxErr(ctx, err))
	}
	for {
		replies, err := c.Receive()
		if err != nil {
			return fmt.Errorf("nftables transaction of %d messages: %w", n, ctxErr(ctx, err))
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error && r.Header.Sequence == last {
				return nil
			}
		}
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

func setSockopt(c *netlink.Conn, opt, v int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, v) }); err != nil {
		return err
	}
	return serr
}

func (k *kernel) close() error {
	var errs []error
	if k.conn != nil {
		errs = append(errs, k.conn.Close())
		k.conn = nil
	}
	if k.read != nil {
		errs = append(errs, k.read.CloseLasting())
		k.read = nil
	}
	return errors.Join(errs...)
}

// Set data types, as numbered by nft (datatype.h), and a concatenation of
// them: each type shifted in by 6 bits.
const (
	typeVerdict     = 1
	typeInteger     = 4
	typeIPv4Addr    = 7
	typeIPv6Addr    = 8
	typeInetProto   = 12
	typeInetService = 13
)

func concatType(types ...uint32) uint32 {
	var t uint32
	for _, x := range types {
		t = t<<6 | x
	}
	return t
}

func verdictMapName(k forwarding.Key) string {
	if k.VIP.Is6() {
		return mapV6
	}
	return mapV4
}

// verdictMap is service-ips or service-ips6: address . inet_proto .
// inet_service : verdict.
func verdictMap(v6 bool) mapDef {
	addr, n, name := uint32(typeIPv4Addr), uint32(4), mapV4
	if v6 {
		addr, n, name = typeIPv6Addr, 16, mapV6
	}
	return mapDef{name: name,
		keyType: concatType(addr, typeInetProto, typeInetService), keyLen: n + 4 + 4,
		dataType: unix.NFT_DATA_VERDICT, udata: typeUdata(nil, nil)}
}

// backendsMap is a backends map: typeof ip daddr . tcp dport . numgen
// random mod 2 : ip daddr . tcp dport (for v4 and tcp).
func backendsMap(v6 bool, p forwarding.Protocol) mapDef {
	addr, n, l3 := uint32(typeIPv4Addr), uint32(4), udataPayload(protoDescIP, ipDaddr)
	if v6 {
		addr, n, l3 = typeIPv6Addr, 16, udataPayload(protoDescIP6, ip6Daddr)
	}
	l4 := udataPayload(protoDesc[p], thDport)
	return mapDef{name: backends(v6, p),
		keyType: concatType(addr, typeInetService, typeInteger), keyLen: n + 4 + 4,
		dataType: concatType(addr, typeInetService), dataLen: n + 4,
		udata: typeUdata(udataConcat(l3, l4, udataNumgen(2)), udataConcat(l3, l4))}
}

// Keys and values of elements: each field of a concatenation padded to 4
// bytes; addresses and ports in network order, numgen's number in host
// order (what the numgen expression writes to its register).

func verdictKey(k forwarding.Key) []byte {
	b := k.VIP.AsSlice()
	b = append(b, ipProto[k.Protocol], 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, k.Port)
	return append(b, 0, 0)
}

func backendKey(k forwarding.Key, i int) []byte {
	b := k.VIP.AsSlice()
	b = binary.BigEndian.AppendUint16(b, k.Port)
	b = append(b, 0, 0)
	return binary.NativeEndian.AppendUint32(b, uint32(i))
}

func addrPort(ep netip.AddrPort) []byte {
	b := ep.Addr().Unmap().AsSlice()
	b = binary.BigEndian.AppendUint16(b, ep.Port())
	return append(b, 0, 0)
}

var ipProto = map[forwarding.Protocol]byte{
	forwarding.TCP: unix.IPPROTO_TCP, forwarding.UDP: unix.IPPROTO_UDP, forwarding.SCTP: unix.IPPROTO_SCTP,
}

// Registers as nft allocates them (nft --debug=netlink): 1 and 2 are
// 16-byte registers, 9 and up 4-byte ones (9 is the second 4 bytes of 1).
const (
	reg1, reg2, reg9, reg10, reg13 = 1, 2, 9, 10, 13
)

// nfproto matches the packet's family: what "ip daddr" implies in an inet
// table.
func nfproto(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// daddr loads the destination address into register 1.
func daddr(v6 bool) expr.Any {
	if v6 {
		return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}
	}
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func dport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// servicesRule is "ip daddr . meta l4proto . th dport vmap @service-ips"
// (ip6 and service-ips6 for v6).
func servicesRule(v6 bool) []expr.Any {
	proto, port, m := uint32(reg9), uint32(reg10), mapV4
	if v6 {
		proto, port, m = reg2, reg13, mapV6
	}
	return append(nfproto(v6), daddr(v6),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: proto},
		dport(port),
		&expr.Lookup{SourceRegister: reg1, SetName: m, DestRegister: 0, IsDestRegSet: true})
}

// dnatExprs is an endpoint chain's rule, dnatRule's text as expressions:
// "meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod N
// map @backends4-tcp".
func dnatExprs(e eps) []expr.Any {
	port, num, fam := uint32(reg9), uint32(reg10), uint32(unix.NFPROTO_IPV4)
	if e.v6 {
		port, num, fam = reg2, reg13, unix.NFPROTO_IPV6
	}
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ipProto[e.proto]}},
	}
	return append(append(out, nfproto(e.v6)...), daddr(e.v6), dport(port),
		&expr.Numgen{Register: num, Modulus: uint32(e.n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, SetName: backends(e.v6, e.proto), DestRegister: reg1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: port})
}

// ruleCounts asks the kernel directly: one dump of the inet family's
// chains, then one dump of each of our chains' rules (the fixed ones and
// one per endpoint count in use). No set element is read, so it costs
// milliseconds whatever the number of services, where any `nft list` of
// the table reads them all.
func (k *kernel) ruleCounts(context.Context) (n map[string]int, err error) {
	if k.read == nil {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return nil, err
		}
		k.read = c
	}
	defer func() {
		if err != nil {
			_ = k.read.CloseLasting()
			k.read = nil
		}
	}()
	chains, err := k.read.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != Table {
			continue
		}
		if n == nil {
			n = map[string]int{}
		}
		rules, err := k.read.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("rules of chain %s: %w", c.Name, err)
		}
		if len(rules) > 0 {
			n[c.Name] = len(rules)
		}
	}
	return n, nil
}

// attrs is a netlink attribute encoder: 16-bit length and type in host
// order, data padded to 4 bytes.
type attrs struct{ b []byte }

func (a *attrs) bytes(typ uint16, data []byte) {
	a.b = binary.NativeEndian.AppendUint16(a.b, uint16(4+len(data)))
	a.b = binary.NativeEndian.AppendUint16(a.b, typ)
	a.b = append(a.b, data...)
	for len(a.b)%4 != 0 {
		a.b = append(a.b, 0)
	}
}

func (a *attrs) str(typ uint16, s string) { a.bytes(typ, append([]byte(s), 0)) }

// u32 is a 32-bit value in network order, as nf_tables wants.
func (a *attrs) u32(typ uint16, v uint32) { a.bytes(typ, binary.BigEndian.AppendUint32(nil, v)) }

// nest opens a nested attribute; end closes it.
func (a *attrs) nest(typ uint16) int {
	off := len(a.b)
	a.b = binary.NativeEndian.AppendUint16(a.b, 0)
	a.b = binary.NativeEndian.AppendUint16(a.b, typ|unix.NLA_F_NESTED)
	return off
}

func (a *attrs) end(off int) {
	binary.NativeEndian.PutUint16(a.b[off:], uint16(len(a.b)-off))
}
