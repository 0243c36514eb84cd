package startup

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tt := range []struct {
		gomemlimit, limit string
		want              int64
	}{
		{"", "134217728", 134217728 / 10 * 9}, // 128Mi: nine tenths
		{"", "", 0},                           // no limit: the default pace
		{"", "max", 0},                        // not a number
		{"100MiB", "134217728", 0},            // GOMEMLIMIT wins
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		t.Setenv("GOMEMLIMIT", tt.gomemlimit)
		t.Setenv(MemoryLimitEnv, tt.limit)
		got := MemoryLimit()
		set := debug.SetMemoryLimit(-1)
		if got != tt.want || (tt.want > 0 && set != tt.want) || (tt.want == 0 && set != math.MaxInt64) {
			t.Errorf("GOMEMLIMIT=%q %s=%q: MemoryLimit() = %d, runtime limit %d; want %d", tt.gomemlimit, MemoryLimitEnv, tt.limit, got, set, tt.want)
		}
	}
}
