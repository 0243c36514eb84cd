// Package election decides, as a pure function of plain values, which node announces each layer-2 service address and on which interfaces.
package election
