package nft

import (
	"encoding/binary"

	"github.com/ironlb/ironlb/internal/forwarding"
)

// User data: what nft stores in the kernel next to a table or set and the
// kernel keeps without reading, such as a comment or how a set was
// declared. nft needs a set's "typeof" to print and re-read a key that
// has an integer in it (the numgen pick of the backends maps). The format
// is libnftnl's: a list of type (1 byte), length (1 byte), value; numbers
// as 32 bits in host order; nested lists as values. The numbers below are
// what nft 1.0.6 writes (nft --debug=mnl), and TestKernel checks that nft
// prints the maps back as declared.

// Set user data types (libnftnl udata.h, NFTNL_UDATA_SET_*).
const (
	udataSetKeyByteorder  = 0
	udataSetDataByteorder = 1
	udataSetKeyTypeof     = 3
	udataSetDataTypeof    = 4
	udataSetDataInterval  = 6
)

// A typeof expression is {0: expression type, 1: its data}; nft's
// expression types and each one's data as nft writes them.
const (
	udataTypeofExpr = 0
	udataTypeofData = 1

	exprPayload = 7
	exprConcat  = 13
	exprNumgen  = 23

	// payload data: {0: protocol description, 1: header field}.
	protoDescUDP  = 6
	protoDescTCP  = 8
	protoDescSCTP = 10
	protoDescIP   = 12
	protoDescIP6  = 13
	ipDaddr       = 12 // in nft's ip header template
	ip6Daddr      = 9  // in nft's ip6 header template
	thDport       = 2  // in the tcp, udp and sctp header templates

	// numgen data: {0: type, 1: modulus, 2: offset}.
	numgenRandom = 1
)

var protoDesc = map[forwarding.Protocol]uint32{
	forwarding.TCP: protoDescTCP, forwarding.UDP: protoDescUDP, forwarding.SCTP: protoDescSCTP,
}

func udata(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ, byte(len(v)))
	return append(b, v...)
}

func udataU32(b []byte, typ byte, v uint32) []byte {
	return udata(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

func udataString(b []byte, typ byte, s string) []byte {
	return udata(b, typ, append([]byte(s), 0))
}

func udataExpr(typ uint32, data []byte) []byte {
	return udata(udataU32(nil, udataTypeofExpr, typ), udataTypeofData, data)
}

func udataPayload(desc, field uint32) []byte {
	return udataExpr(exprPayload, udataU32(udataU32(nil, 0, desc), 1, field))
}

func udataNumgen(mod uint32) []byte {
	return udataExpr(exprNumgen, udataU32(udataU32(udataU32(nil, 0, numgenRandom), 1, mod), 2, 0))
}

// udataConcat is a concatenation of expressions, numbered from 0.
func udataConcat(exprs ...[]byte) []byte {
	var data []byte
	for i, e := range exprs {
		data = udata(data, byte(i), e)
	}
	return udataExpr(exprConcat, data)
}

// typeUdata is a map's user data: byte orders, the key's typeof and, when
// set, the data's. A map declared with "type" gets an empty concatenation
// as its key's typeof, as nft writes it.
func typeUdata(key, data []byte) []byte {
	if key == nil {
		key = udataConcat()
	}
	b := udataU32(nil, udataSetKeyByteorder, 0)
	b = udataU32(b, udataSetDataByteorder, 0)
	b = udata(b, udataSetKeyTypeof, key)
	if data != nil {
		b = udata(b, udataSetDataTypeof, data)
	}
	return udataU32(b, udataSetDataInterval, 0)
}
