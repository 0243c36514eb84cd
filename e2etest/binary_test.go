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
	buildMu  sync.Mutex
	builds   = map[string]string{} // command -> built path
	buildDir string
)

func TestMain(m *testing.M) {
	// The lab uses controller-runtime's client, which warns with a stack
	// trace when no logger is set; its logs are not wanted here.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	for _, fn := range cleanups {
		fn()
	}
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
func controllerBinary(tb testing.TB) string { return binary(tb, "controller", "IRONLB_CONTROLLER") }

// speakerBinary is the same for the speaker (IRONLB_SPEAKER).
func speakerBinary(tb testing.TB) string { return binary(tb, "speaker", "IRONLB_SPEAKER") }

// podServerBinary is the lab's pod HTTP server (IRONLB_PODSERVER).
func podServerBinary(tb testing.TB) string {
	return binary(tb, "e2etest/cmd/podserver", "IRONLB_PODSERVER")
}

func binary(tb testing.TB, cmdName, env string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[cmdName]; ok {
		return p
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "ironlb-e2e-bin-")
		if err != nil {
			tb.Fatalf("building the %s: %v", cmdName, err)
		}
		buildDir = dir
	}
	path := filepath.Join(buildDir, filepath.Base(cmdName))
	cmd := exec.Command("go", "build", "-trimpath", "-o", path, "./"+cmdName)
	cmd.Dir = repoRoot(tb)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building the %s: %v", cmdName, &buildError{err: err, out: string(out)})
	}
	builds[cmdName] = path
	return path
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
func (e *buildError) Unwrap() error { return e.err }

func itoa(i int) string { return strconv.Itoa(i) }
