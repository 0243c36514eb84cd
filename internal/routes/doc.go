// Package routes computes, as a pure function of plain values, the BGP paths one node advertises to each of its peers.
package routes
