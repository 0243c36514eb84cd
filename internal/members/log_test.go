package members

import (
	"log/slog"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line      string
		wantLevel slog.Level
		wantText  string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:4000", slog.LevelDebug, "Stream connection from=127.0.0.1:4000"},
		{"[TRACE] memberlist: something", slog.LevelDebug, "something"},
		{"[INFO] memberlist: Marking node-2 as failed, suspect timeout reached (0 peer confirmations)", slog.LevelInfo, "Marking node-2 as failed, suspect timeout reached (0 peer confirmations)"},
		{"[WARN] memberlist: Refuting a suspect message (from: node-0)", slog.LevelWarn, "Refuting a suspect message (from: node-0)"},
		{"[ERR] memberlist: Failed to send gossip to 127.0.0.1:7946: boom", slog.LevelError, "Failed to send gossip to 127.0.0.1:7946: boom"},
		{"[ERROR] memberlist: x", slog.LevelError, "x"},
		// Lines that do not follow the pattern are kept whole at Info.
		{"no level here", slog.LevelInfo, "no level here"},
		{"[NOTICE] odd", slog.LevelInfo, "[NOTICE] odd"},
		{"[DEBUG no bracket", slog.LevelInfo, "[DEBUG no bracket"},
		{"", slog.LevelInfo, ""},
	} {
		level, text := parseLine(tc.line)
		if level != tc.wantLevel || text != tc.wantText {
			t.Errorf("parseLine(%q) = %v, %q; want %v, %q", tc.line, level, text, tc.wantLevel, tc.wantText)
		}
	}
}

func TestStdLoggerReachesSlog(t *testing.T) {
	rec := &recorder{}
	newStdLogger(slog.New(rec)).Printf("[WARN] memberlist: Was able to connect to %s over TCP but UDP probes failed", "node-1")
	r, ok := rec.find(slog.LevelWarn, "memberlist log")
	if !ok {
		t.Fatalf("no warn record; got %v", rec.records)
	}
	if got, want := attr(r, "text"), "Was able to connect to node-1 over TCP but UDP probes failed"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
}

func TestTimingZeroFieldsTakeDefaults(t *testing.T) {
	if got, want := (Timing{}).withDefaults(), DefaultTiming(); got != want {
		t.Errorf("Timing{}.withDefaults() = %+v, want %+v", got, want)
	}
	got := Timing{ProbeInterval: time.Second, SuspicionMult: 5}.withDefaults()
	want := DefaultTiming()
	want.ProbeInterval, want.SuspicionMult = time.Second, 5
	if got != want {
		t.Errorf("override kept = %+v, want %+v", got, want)
	}
}
