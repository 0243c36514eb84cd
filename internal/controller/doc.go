// Package controller assigns addresses from IPAddressPools to LoadBalancer
// Services: it feeds the pure allocator from the API server's state and
// writes the result back as Service status, pool status, Events and metrics.
package controller
