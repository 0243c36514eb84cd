// Package bgp runs the speaker's BGP sessions: an embedded GoBGP server per peer, configured and fed paths as a diff against what it already holds.
package bgp
