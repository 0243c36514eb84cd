package e2etest

import "testing"

func TestParseRouteEvent(t *testing.T) {
	cases := []struct {
		line string
		want routeEvent
		ok   bool
	}{
		{line: "[2026-11-26T17:31:08.662386] 198.51.100.60 nhid 10 via 192.168.100.11 dev eth0 proto bgp metric 20",
			want: routeEvent{dst: "198.51.100.60"}, ok: true},
		{line: "[2026-11-26T17:31:08.662386] Deleted 198.51.100.60 nhid 10 via 192.168.100.11 dev eth0 proto bgp metric 20",
			want: routeEvent{dst: "198.51.100.60", deleted: true}, ok: true},
		{line: "[2026-11-26T17:31:08.662386] Deleted 198.51.100.60 via 192.168.100.11 dev eth0 table 100 proto bird metric 32",
			want: routeEvent{dst: "198.51.100.60", deleted: true, table: "100"}, ok: true},
		{line: "[2026-11-26T17:31:08.662386] 198.51.100.61 table main proto bgp metric 20",
			want: routeEvent{dst: "198.51.100.61"}, ok: true},
		{line: "\tnexthop via 192.168.100.12 dev eth0 weight 1"},
	}
	for _, c := range cases {
		got, ok := parseRouteEvent(c.line)
		if ok != c.ok || got.dst != c.want.dst || got.deleted != c.want.deleted || got.table != c.want.table {
			t.Errorf("parseRouteEvent(%q) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestParseWorkQueueHolds(t *testing.T) {
	out := `Work queue statistics for zebra:
      List (ms)   Q. Runs   Yields       Cycle Counts   
P    Items  Hold    Total    Total    Best  Gran.    Total   Avg. Name
         0    10      356        0      22      4      857      2 route_node processing

Work queue statistics for bgpd:
      List (ms)   Q. Runs   Yields       Cycle Counts   
P    Items  Hold    Total    Total    Best  Gran.    Total   Avg. Name
         0    50        2        0       1      1        2      1 label callbacks
P        0    50       40        0       1      1       40      1 process_queue (null)
`
	if got, want := parseWorkQueueHolds(out), "zebra 10 ms, bgpd 50 ms"; got != want {
		t.Errorf("parseWorkQueueHolds = %q, want %q", got, want)
	}
}
