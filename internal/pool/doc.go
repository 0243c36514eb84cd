// Package pool parses the address entries of an IPAddressPool into inclusive netip ranges and does their 128-bit arithmetic.
package pool
