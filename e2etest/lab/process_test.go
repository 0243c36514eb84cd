package lab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDownStopsProcessGroups checks that Down stops what a lab process
// forked too, and removes the state directory.
func TestDownStopsProcessGroups(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &Lab{Dir: dir, Extra: map[string]string{}}
	pidFile := filepath.Join(dir, "child.pid")
	// The shell forks a sleep: a SIGTERM to the shell alone would orphan
	// it, a signal to the group ends both.
	p, err := l.StartProcess("shell", nil, "/bin/sh", "-c", "sleep 60 & echo $! > "+pidFile+"; wait")
	if err != nil {
		t.Fatal(err)
	}
	child := waitPIDFile(t, pidFile)
	if err := Down(dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if p.Alive() {
		t.Errorf("shell (pid %d) still runs", p.PID)
	}
	if c := (&Process{Name: "sleep", PID: child}); c.Alive() {
		t.Errorf("forked sleep (pid %d) still runs", child)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Down left %s behind", dir)
	}
	if err := Down(dir); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

// TestDownSparesReusedPID checks that a recorded PID now used by another
// process (told apart by its start time) is not signalled.
func TestDownSparesReusedPID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Record this test process under a start time it does not have.
	start, err := startTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Dir: dir, Processes: []*Process{{Name: "stale", PID: os.Getpid(), StartTicks: start + 1}}}
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if dead := l.Alive(); len(dead) != 1 || dead[0] != "stale" {
		t.Errorf("Alive() = %v, want the stale record reported as stopped", dead)
	}
	if err := Down(dir); err != nil { // would kill the test if it signalled
		t.Fatalf("Down: %v", err)
	}
}

func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("parsing %s: %v", path, err)
			}
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pid in %s after 10s", path)
	return 0
}

func TestStatFields(t *testing.T) {
	f := statFields("42 (a (b) c) S 1 42 42 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 777 100 200")
	if len(f) < 22 || f[2] != "S" || f[13] != "5" || f[14] != "6" || f[21] != "777" {
		t.Errorf("statFields: state %q utime %q stime %q start %q", f[2], f[13], f[14], f[21])
	}
}
