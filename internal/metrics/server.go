// Package metrics serves Prometheus metrics for IronLB's processes.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Server is a manager.Runnable serving /metrics on addr from reg together
// with controller-runtime's own registry (workqueue, client and Go process
// metrics), which controller-runtime would otherwise serve alone. It runs
// on every replica, leader or not. With profiling it also serves Go's
// profiles under /debug/pprof/, as Kubernetes' own components do with
// --profiling.
func Server(addr string, reg prometheus.Gatherer, profiling bool, log *slog.Logger) manager.Runnable {
	return server{addr: addr, g: prometheus.Gatherers{reg, ctrlmetrics.Registry}, profiling: profiling, log: log}
}

type server struct {
	addr      string
	g         prometheus.Gatherer
	profiling bool
	log       *slog.Logger
}

func (server) NeedLeaderElection() bool { return false }

func (s server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", s.addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.g, promhttp.HandlerOpts{}))
	if s.profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	s.log.Info("serving metrics", "addr", ln.Addr().String(), "profiling", s.profiling)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
