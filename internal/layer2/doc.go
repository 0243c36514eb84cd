// Package layer2 answers ARP and NDP for service addresses on chosen interfaces without adding them to any interface.
package layer2
