package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The generic netlink family and its constants, from the kernel's uapi
// header linux/ip_vs.h.
const (
	familyName    = "IPVS" // IPVS_GENL_NAME
	familyVersion = 1      // IPVS_GENL_VERSION
)

// Commands (enum IPVS_CMD_*).
const (
	cmdNewService uint8 = 1
	cmdSetService uint8 = 2
	cmdDelService uint8 = 3
	cmdGetService uint8 = 4
	cmdNewDest    uint8 = 5
	cmdSetDest    uint8 = 6
	cmdDelDest    uint8 = 7
	cmdGetDest    uint8 = 8
)

// Attributes of a command (IPVS_CMD_ATTR_*).
const (
	cmdAttrService uint16 = 1
	cmdAttrDest    uint16 = 2
)

// Attributes of a service, nested in cmdAttrService (IPVS_SVC_ATTR_*).
const (
	svcAttrAF        uint16 = 1 // u16
	svcAttrProtocol  uint16 = 2 // u16
	svcAttrAddr      uint16 = 3 // union nf_inet_addr, 16 bytes
	svcAttrPort      uint16 = 4 // u16, network byte order
	svcAttrFwmark    uint16 = 5
	svcAttrSchedName uint16 = 6 // NUL-terminated string
	svcAttrFlags     uint16 = 7 // struct ip_vs_flags {u32 flags; u32 mask}
	svcAttrTimeout   uint16 = 8 // u32, persistence
	svcAttrNetmask   uint16 = 9 // u32: IPv4 mask, IPv6 prefix length
)

// Attributes of a destination, nested in cmdAttrDest (IPVS_DEST_ATTR_*).
const (
	destAttrAddr       uint16 = 1  // 16 bytes
	destAttrPort       uint16 = 2  // u16, network byte order
	destAttrFwdMethod  uint16 = 3  // u32, IP_VS_CONN_F_*
	destAttrWeight     uint16 = 4  // u32
	destAttrUThresh    uint16 = 5  // u32
	destAttrLThresh    uint16 = 6  // u32
	destAttrAddrFamily uint16 = 11 // u16
)

// Client reads and changes the kernel's IPVS table over generic netlink.
// It is not safe for concurrent use.
type Client struct {
	conn   *genetlink.Conn
	family genetlink.Family
}

// Dial opens a generic netlink socket in this network namespace and
// resolves the IPVS family; it fails if the kernel has no IPVS (module
// ip_vs not loaded and not loadable).
func Dial() (*Client, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("opening generic netlink: %w", err)
	}
	cl, err := NewClient(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

// NewClient resolves the IPVS family on any generic netlink connection,
// such as one from genltest.Dial.
func NewClient(c *genetlink.Conn) (*Client, error) {
	f, err := c.GetFamily(familyName)
	if err != nil {
		return nil, fmt.Errorf("generic netlink family %s (is the ip_vs module loaded?): %w", familyName, err)
	}
	return &Client{conn: c, family: f}, nil
}

// Close closes the socket.
func (c *Client) Close() error { return c.conn.Close() }

// Services lists the kernel's virtual services keyed by address,
// protocol and port, without their real servers. Firewall-mark services
// and protocols other than TCP, UDP and SCTP are left out: IronLB never
// makes them.
func (c *Client) Services() ([]Service, error) {
	msgs, err := c.execute(cmdGetService, nil, netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("listing IPVS services: %w", err)
	}
	var out []Service
	for _, m := range msgs {
		s, ok, err := decodeServiceMessage(m.Data)
		if err != nil {
			return nil, fmt.Errorf("listing IPVS services: %w", err)
		}
		if ok {
			out = append(out, s)
		}
	}
	sortServices(out)
	return out, nil
}

// Dests lists the real servers of svc, sorted.
func (c *Client) Dests(svc Service) ([]Dest, error) {
	attrs, err := encodeIdentity(svc)
	if err != nil {
		return nil, err
	}
	msgs, err := c.execute(cmdGetDest, attrs, netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("listing destinations of IPVS service %s: %w", svc, err)
	}
	out := make([]Dest, 0, len(msgs))
	for _, m := range msgs {
		d, err := decodeDestMessage(m.Data, svc.VIP.Is6())
		if err != nil {
			return nil, fmt.Errorf("listing destinations of IPVS service %s: %w", svc, err)
		}
		out = append(out, d)
	}
	sortDests(out)
	return out, nil
}

// Apply makes one change and waits for the kernel's acknowledgement.
func (c *Client) Apply(op Op) error {
	cmd, attrs, err := encodeOp(op)
	if err != nil {
		return err
	}
	if _, err := c.execute(cmd, attrs, 0); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (c *Client) execute(cmd uint8, attrs []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	return c.conn.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: familyVersion},
		Data:   attrs,
	}, c.family.ID, netlink.Request|netlink.Acknowledge|flags)
}

// encodeOp returns the command and attributes of the request for op.
func encodeOp(op Op) (uint8, []byte, error) {
	var cmd uint8
	switch op.Kind {
	case AddService:
		cmd = cmdNewService
	case UpdateService:
		cmd = cmdSetService
	case DeleteService:
		cmd = cmdDelService
	case AddDest:
		cmd = cmdNewDest
	case UpdateDest:
		cmd = cmdSetDest
	case DeleteDest:
		cmd = cmdDelDest
	default:
		return 0, nil, fmt.Errorf("%s: unknown operation", op)
	}
	if err := checkService(op.Service); err != nil {
		return 0, nil, fmt.Errorf("%s: %w", op, err)
	}
	ae := netlink.NewAttributeEncoder()
	// The kernel wants the whole service only when it creates or changes
	// one; every other command names it by its identity.
	full := op.Kind == AddService || op.Kind == UpdateService
	ae.Nested(cmdAttrService, func(nae *netlink.AttributeEncoder) error {
		serviceAttrs(nae, op.Service, full)
		return nil
	})
	switch op.Kind {
	case AddDest, UpdateDest, DeleteDest:
		if err := checkDest(op.Service, op.Dest); err != nil {
			return 0, nil, fmt.Errorf("%s: %w", op, err)
		}
		ae.Nested(cmdAttrDest, func(nae *netlink.AttributeEncoder) error {
			destAttrs(nae, op.Dest, op.Kind != DeleteDest)
			return nil
		})
	}
	b, err := ae.Encode()
	if err != nil {
		return 0, nil, fmt.Errorf("%s: encoding: %w", op, err)
	}
	return cmd, b, nil
}

// encodeIdentity returns the attributes that name svc (for a dump of its
// destinations).
func encodeIdentity(svc Service) ([]byte, error) {
	if err := checkService(svc); err != nil {
		return nil, fmt.Errorf("IPVS service %s: %w", svc, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrService, func(nae *netlink.AttributeEncoder) error {
		serviceAttrs(nae, svc, false)
		return nil
	})
	return ae.Encode()
}

// ErrInvalid marks an operation that cannot be encoded: an invalid
// address, an unknown protocol, a family mix or a scheduler name too long.
var ErrInvalid = errors.New("invalid IPVS object")

func checkService(s Service) error {
	if !s.VIP.IsValid() || s.VIP.Zone() != "" || s.VIP.Is4In6() {
		return fmt.Errorf("%w: address %q", ErrInvalid, s.VIP)
	}
	if _, ok := protocolNumber(s.Protocol); !ok {
		return fmt.Errorf("%w: protocol %q", ErrInvalid, s.Protocol)
	}
	if len(s.Scheduler) >= 16 { // IP_VS_SCHEDNAME_MAXLEN with its NUL
		return fmt.Errorf("%w: scheduler name %q", ErrInvalid, s.Scheduler)
	}
	return nil
}

func checkDest(s Service, d Dest) error {
	a := d.Addr()
	if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.Is6() != s.VIP.Is6() {
		return fmt.Errorf("%w: destination %s for a service on %s", ErrInvalid, d.AddrPort, s.VIP)
	}
	return nil
}

func family(a netip.Addr) uint16 {
	if a.Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// addr16 is a as the kernel's union nf_inet_addr: IPv4 in the first four
// bytes, the rest zero.
func addr16(a netip.Addr) []byte {
	b := make([]byte, 16)
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
	} else {
		v := a.As16()
		copy(b, v[:])
	}
	return b
}

func port16(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// serviceAttrs writes a service's identity (family, protocol, address,
// port) and, with full, its scheduler, flags, persistence timeout (0: not
// persistent) and netmask, all of which the kernel requires to create or
// change one.
func serviceAttrs(ae *netlink.AttributeEncoder, s Service, full bool) {
	proto, _ := protocolNumber(s.Protocol)
	ae.Uint16(svcAttrAF, family(s.VIP))
	ae.Uint16(svcAttrProtocol, proto)
	ae.Bytes(svcAttrAddr, addr16(s.VIP))
	ae.Bytes(svcAttrPort, port16(s.Port))
	if !full {
		return
	}
	ae.String(svcAttrSchedName, s.Scheduler)
	flags := make([]byte, 8)
	binary.NativeEndian.PutUint32(flags[0:], s.Flags&^flagHashed)
	binary.NativeEndian.PutUint32(flags[4:], ^uint32(0))
	ae.Bytes(svcAttrFlags, flags)
	ae.Uint32(svcAttrTimeout, 0)
	if s.VIP.Is6() {
		ae.Uint32(svcAttrNetmask, 128)
	} else {
		ae.Uint32(svcAttrNetmask, 0xffffffff)
	}
}

// destAttrs writes a real server's address and port and, with full, its
// forwarding method, weight and (unlimited) connection thresholds.
func destAttrs(ae *netlink.AttributeEncoder, d Dest, full bool) {
	ae.Bytes(destAttrAddr, addr16(d.Addr()))
	ae.Bytes(destAttrPort, port16(d.Port()))
	ae.Uint16(destAttrAddrFamily, family(d.Addr()))
	if !full {
		return
	}
	ae.Uint32(destAttrFwdMethod, d.FwdMethod&fwdMask)
	ae.Uint32(destAttrWeight, d.Weight)
	ae.Uint32(destAttrUThresh, 0)
	ae.Uint32(destAttrLThresh, 0)
}

// decodeServiceMessage reads one service of a GET_SERVICE dump; ok is
// false for a service IronLB does not make (firewall mark, other
// protocols).
func decodeServiceMessage(b []byte) (s Service, ok bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Service{}, false, err
	}
	for ad.Next() {
		if ad.Type() == cmdAttrService {
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				s, ok, err = decodeService(nad)
				return err
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Service{}, false, err
	}
	return s, ok, nil
}

func decodeService(ad *netlink.AttributeDecoder) (Service, bool, error) {
	var (
		s         Service
		af, proto uint16
		raw       []byte
		port      []byte
		fwmark    uint32
	)
	for ad.Next() {
		switch ad.Type() {
		case svcAttrAF:
			af = ad.Uint16()
		case svcAttrProtocol:
			proto = ad.Uint16()
		case svcAttrAddr:
			raw = ad.Bytes()
		case svcAttrPort:
			port = ad.Bytes()
		case svcAttrFwmark:
			fwmark = ad.Uint32()
		case svcAttrSchedName:
			s.Scheduler = ad.String()
		case svcAttrFlags:
			if f := ad.Bytes(); len(f) >= 4 {
				s.Flags = binary.NativeEndian.Uint32(f) &^ flagHashed
			}
		}
	}
	if err := ad.Err(); err != nil {
		return Service{}, false, err
	}
	p, known := protocolOf(proto)
	if fwmark != 0 || !known || raw == nil {
		return Service{}, false, nil
	}
	vip, err := addrFrom(raw, af == unix.AF_INET6)
	if err != nil {
		return Service{}, false, err
	}
	if len(port) != 2 {
		return Service{}, false, fmt.Errorf("service %s: port attribute of %d bytes", vip, len(port))
	}
	s.VIP, s.Protocol, s.Port = vip, p, binary.BigEndian.Uint16(port)
	return s, true, nil
}

// decodeDestMessage reads one real server of a GET_DEST dump; v6 is the
// service's family, which an older kernel does not repeat per real server.
func decodeDestMessage(b []byte, v6 bool) (Dest, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Dest{}, err
	}
	var (
		d     Dest
		found bool
	)
	for ad.Next() {
		if ad.Type() != cmdAttrDest {
			continue
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			var (
				raw, port []byte
				af        uint16
			)
			for nad.Next() {
				switch nad.Type() {
				case destAttrAddr:
					raw = nad.Bytes()
				case destAttrPort:
					port = nad.Bytes()
				case destAttrFwdMethod:
					d.FwdMethod = nad.Uint32() & fwdMask
				case destAttrWeight:
					d.Weight = nad.Uint32()
				case destAttrAddrFamily:
					af = nad.Uint16()
				}
			}
			if err := nad.Err(); err != nil {
				return err
			}
			if af != 0 {
				v6 = af == unix.AF_INET6
			}
			a, err := addrFrom(raw, v6)
			if err != nil {
				return err
			}
			if len(port) != 2 {
				return fmt.Errorf("destination %s: port attribute of %d bytes", a, len(port))
			}
			d.AddrPort = netip.AddrPortFrom(a, binary.BigEndian.Uint16(port))
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return Dest{}, err
	}
	if !found {
		return Dest{}, errors.New("message without a destination")
	}
	return d, nil
}

func addrFrom(b []byte, v6 bool) (netip.Addr, error) {
	switch {
	case v6 && len(b) >= 16:
		return netip.AddrFrom16([16]byte(b[:16])), nil
	case !v6 && len(b) >= 4:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	}
	return netip.Addr{}, fmt.Errorf("address attribute of %d bytes", len(b))
}
