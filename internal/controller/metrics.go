package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus series. They are registered on the
// registry given to NewMetrics, never on a global one.
type Metrics struct {
	assigned         *prometheus.GaugeVec
	available        *prometheus.GaugeVec
	allocationErrors *prometheus.CounterVec
}

// NewMetrics creates the controller's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		assigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ironlb_allocator_addresses_assigned",
			Help: "Addresses of a pool held by Services (a shared address counts once).",
		}, []string{"pool", "family"}),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ironlb_allocator_addresses_available",
			Help: "Addresses of a pool still free to assign.",
		}, []string{"pool", "family"}),
		allocationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_allocator_errors_total",
			Help: "Allocations refused, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.assigned, m.available, m.allocationErrors)
	return m
}

// setPool records one pool's usage.
func (m *Metrics) setPool(name string, assigned4, assigned6, available4, available6 int64) {
	m.assigned.WithLabelValues(name, "ipv4").Set(float64(assigned4))
	m.assigned.WithLabelValues(name, "ipv6").Set(float64(assigned6))
	m.available.WithLabelValues(name, "ipv4").Set(float64(available4))
	m.available.WithLabelValues(name, "ipv6").Set(float64(available6))
}

// deletePool drops the series of a pool that no longer exists.
func (m *Metrics) deletePool(name string) {
	m.assigned.DeletePartialMatch(prometheus.Labels{"pool": name})
	m.available.DeletePartialMatch(prometheus.Labels{"pool": name})
}
