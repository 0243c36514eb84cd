// Package startup is what both commands do before they run: a logger at
// the level asked, the API server's client configuration, and the Go
// runtime's memory limit from the container's.
package startup

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Logger logs JSON to stderr at level (debug, info, warn or error), and
// makes controller-runtime and client-go log through it too.
func Logger(level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctrllog.SetLogger(logr.FromSlogHandler(l.Handler()))
	return l, nil
}

// Rest reads kubeconfig ("" is in-cluster) and sets the client's rate
// limit.
func Rest(kubeconfig string, qps float64, burst int) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	return cfg, nil
}

// GCPercent makes percent the collector's target heap growth, unless GOGC
// says otherwise, and returns the target in effect (-1: off).
func GCPercent(percent int) int {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(percent)
	return percent
}

// MemoryLimitEnv names the variable the manifests fill with the
// container's memory limit in bytes (a resourceFieldRef).
const MemoryLimitEnv = "MEMORY_LIMIT"

// MemoryLimit makes nine tenths of the container's memory limit the Go
// runtime's soft limit, unless GOMEMLIMIT says otherwise: near it the
// collector runs more often instead of the kernel killing the process.
// Without a limit the collector keeps its default pace. It returns the
// limit set, 0 for none.
func MemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, err := strconv.ParseInt(os.Getenv(MemoryLimitEnv), 10, 64)
	if err != nil || limit <= 0 {
		return 0
	}
	soft := limit / 10 * 9
	debug.SetMemoryLimit(soft)
	return soft
}
