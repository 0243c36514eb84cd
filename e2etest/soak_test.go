package e2etest

import (
	"flag"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

var soakDuration = flag.Duration("soak-duration", 10*time.Minute, "how long BenchmarkL2Soak keeps every CPU busy")

// BenchmarkL2Soak runs the three-node lab for -soak-duration with every
// CPU kept busy by spinning processes, and counts what must not happen: a
// speaker declaring a live peer gone (a spurious failover). It reports the
// count as spurious-failovers; anything but 0 fails the benchmark.
func BenchmarkL2Soak(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("the lab needs root")
	}
	l := ownLab(b, 180, "ilbs", nil)
	for range b.N {
		hogs := make([]*exec.Cmd, runtime.NumCPU())
		for i := range hogs {
			hogs[i] = exec.Command("sh", "-c", "while :; do :; done")
			if err := hogs[i].Start(); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("%d CPU hogs running for %s", len(hogs), *soakDuration)
		time.Sleep(*soakDuration)
		for _, h := range hogs {
			_ = h.Process.Kill()
			_ = h.Wait()
		}
		gone := 0
		for _, nd := range l.Network.Nodes {
			log, err := os.ReadFile(l.Process("speaker-" + nd.Name).Log)
			if err != nil {
				b.Fatal(err)
			}
			for _, line := range strings.Split(string(log), "\n") {
				if strings.Contains(line, `"msg":"member gone"`) {
					gone++
					b.Logf("%s: %s", nd.Name, line)
				}
			}
		}
		b.ReportMetric(float64(gone), "spurious-failovers")
		b.ReportMetric(soakDuration.Minutes(), "minutes")
		if gone != 0 {
			b.Errorf("%d spurious failovers in %s with every CPU busy", gone, *soakDuration)
		}
	}
}
