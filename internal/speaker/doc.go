// Package speaker is the per-node process: it reads the cluster's state,
// elects with the other speakers which node announces each service IP, and
// answers ARP and NDP for the IPs this node won.
package speaker
