package election

// HasQuorum reports whether alive speakers are strictly more than half of
// expected. Two halves of a partition can then never both announce, which
// would put two nodes answering ARP for one address.
//
// expected <= 0 means no quorum: the caller has not said how many speakers
// should exist, and failing closed (with a NoQuorum problem) makes that
// visible instead of silently dropping the split-brain protection.
// Consequences: 1 expected needs 1 alive, 2 need 2 (a two-node cluster does
// not fail over), 3 need 2, 4 need 3, 5 need 3.
func HasQuorum(alive, expected int) bool {
	if expected <= 0 {
		return false
	}
	return alive > expected/2
}
