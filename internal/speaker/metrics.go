package speaker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the speaker's series, registered on the registry it is given.
type metrics struct {
	announced        *prometheus.GaugeVec
	answers          *prometheus.CounterVec
	membersAlive     prometheus.Gauge
	speakersExpected prometheus.Gauge
	quorum           prometheus.Gauge
	syncDuration     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ironlb_layer2_announced",
			Help: "1 for each address this node answers ARP/NDP for; the series goes away on withdrawal.",
		}, []string{"ip"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_layer2_answers_total",
			Help: "ARP replies and Neighbor Advertisements sent in answer to requests.",
		}, []string{"interface"}),
		membersAlive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_speaker_members_alive",
			Help: "Speakers this node sees alive through memberlist, itself included.",
		}),
		speakersExpected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_speaker_members_expected",
			Help: "Speakers that should exist: speaker Pods on Ready nodes.",
		}),
		quorum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_speaker_quorum",
			Help: "1 while this node sees a majority of the expected speakers and may announce, else 0.",
		}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ironlb_speaker_sync_duration_seconds",
			Help:    "Time one sync takes: election, announcing, forwarding and BGP, from reading the cache to the last change applied.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	reg.MustRegister(m.announced, m.answers, m.membersAlive, m.speakersExpected, m.quorum, m.syncDuration)
	return m
}
