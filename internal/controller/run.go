package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ironlb/ironlb/api/v1beta1"
	"github.com/ironlb/ironlb/internal/metrics"
)

// Options configure one controller process.
type Options struct {
	Config
	// Rest reaches the API server.
	Rest *rest.Config
	// LeaderElect makes replicas take turns through a Lease in Namespace.
	LeaderElect bool
	// LeaseDuration is how long a dead leader blocks a follower.
	LeaseDuration time.Duration
	// MetricsAddr and HealthAddr are listen addresses; "0" disables.
	MetricsAddr, HealthAddr string
	// Profiling serves /debug/pprof/ on MetricsAddr.
	Profiling bool
	// Registry receives the controller's metrics; it is also what the
	// metrics endpoint serves.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, o Options) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1beta1.AddToScheme(scheme); err != nil {
		return err
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	lease := o.LeaseDuration
	if lease <= 0 {
		lease = 15 * time.Second
	}
	renew := lease * 2 / 3
	retry := lease / 7
	mgr, err := ctrl.NewManager(o.Rest, ctrl.Options{
		Scheme: scheme,
		Logger: logr.FromSlogHandler(o.Logger.Handler()),
		// managedFields are never read here and are a large share of
		// every cached object: 10,000 Services weigh much less without.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
			&v1beta1.IPAddressPool{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
		}},
		// Metrics are served below from our own registry together with
		// controller-runtime's, rather than from its global one alone.
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Replicas may share a process (tests run two side by side); each
		// has its own metrics registry, so the global name check is moot.
		Controller:                    config.Controller{SkipNameValidation: ptr(true)},
		HealthProbeBindAddress:        o.HealthAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              "ironlb-controller",
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	r := NewReconciler(mgr.GetClient(), mgr.GetEventRecorder("ironlb-controller"), o.Logger, NewMetrics(o.Registry), o.Config)
	if err := r.Setup(mgr); err != nil {
		return fmt.Errorf("setting up the service controller: %w", err)
	}
	if o.MetricsAddr != "" && o.MetricsAddr != "0" {
		ln, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fmt.Errorf("controller: metrics listener on %s: %w", o.MetricsAddr, err)
		}
		// With controller-runtime's own registry (workqueue, client and
		// Go process metrics), which it would otherwise serve alone. On
		// every replica, leader or not.
		h := metrics.Handler(prometheus.Gatherers{o.Registry, ctrlmetrics.Registry}, o.Profiling)
		if err := mgr.Add(everyReplica(func(ctx context.Context) error { return metrics.Serve(ctx, ln, h) })); err != nil {
			return err
		}
		o.Logger.Info("serving metrics", "addr", ln.Addr().String(), "profiling", o.Profiling)
	}
	o.Logger.Info("controller starting", "namespace", o.Namespace, "class", o.Class, "unclassed", o.Unclassed, "leader_elect", o.LeaderElect)
	return mgr.Start(ctx)
}

func ptr[T any](v T) *T { return &v }

// everyReplica is a manager runnable that runs on every replica, leader
// or not.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

func (everyReplica) NeedLeaderElection() bool { return false }
