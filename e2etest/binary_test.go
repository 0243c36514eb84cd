package e2etest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var (
	buildOnce  sync.Once
	builtPath  string
	builtError error
	buildDir   string
)

func TestMain(m *testing.M) {
	// The lab uses controller-runtime's client, which warns with a stack
	// trace when no logger is set; its logs are not wanted here.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// repoRoot is the repository's top directory; go test runs in e2etest/.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		tb.Fatalf("finding repository root: %v", err)
	}
	return root
}

// controllerBinary returns the controller to test: IRONLB_CONTROLLER when
// set, else a fresh build of ./controller, so that a stale bin/controller
// never answers for the current source.
func controllerBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("IRONLB_CONTROLLER"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		buildDir, builtError = os.MkdirTemp("", "ironlb-e2e-bin-")
		if builtError != nil {
			return
		}
		builtPath = filepath.Join(buildDir, "controller")
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtPath, "./controller")
		cmd.Dir = repoRoot(tb)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			builtError = &buildError{err: err, out: string(out)}
		}
	})
	if builtError != nil {
		tb.Fatalf("building the controller: %v", builtError)
	}
	return builtPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
func (e *buildError) Unwrap() error { return e.err }

func itoa(i int) string { return strconv.Itoa(i) }
