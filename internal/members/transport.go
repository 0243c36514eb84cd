package members

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Stats counts what this member sent since Start. Every UDP packet is a
// probe, ack, indirect probe or gossip; every stream is a TCP push-pull,
// join or fallback probe.
type Stats struct {
	PacketsSent     uint64
	PacketBytesSent uint64
	StreamsOpened   uint64
	// StreamBytes counts both directions of the streams we opened, so a
	// push-pull's request and reply are counted once, by its initiator.
	StreamBytes uint64
}

// countingTransport wraps memberlist's NetTransport and counts outgoing
// traffic, so the traffic formula in Timing can be checked against a real
// cluster and the speaker can export it as metrics.
type countingTransport struct {
	*memberlist.NetTransport
	packets, packetBytes, streams, streamBytes atomic.Uint64
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	ts, err := t.NetTransport.WriteToAddress(b, addr)
	if err == nil {
		t.packets.Add(1)
		t.packetBytes.Add(uint64(len(b)))
	}
	return ts, err
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	t.streams.Add(1)
	return &countingConn{Conn: c, bytes: &t.streamBytes}, nil
}

func (t *countingTransport) stats() Stats {
	return Stats{
		PacketsSent:     t.packets.Load(),
		PacketBytesSent: t.packetBytes.Load(),
		StreamsOpened:   t.streams.Load(),
		StreamBytes:     t.streamBytes.Load(),
	}
}

// countingConn counts the bytes read and written on a stream we dialled.
type countingConn struct {
	net.Conn
	bytes *atomic.Uint64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.bytes.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.bytes.Add(uint64(n))
	return n, err
}
