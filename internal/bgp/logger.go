package bgp

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// logger passes GoBGP's log lines to slog. GoBGP logs every FSM step at
// Info; those are Debug here, since the speaker logs state changes itself
// with fixed messages.
type logger struct {
	log  *slog.Logger
	peer string
}

func (l *logger) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	args := make([]any, 0, 2*len(fields)+4)
	args = append(args, "peer", l.peer, "component", "gobgp")
	for k, v := range fields {
		args = append(args, k, v)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

func (l *logger) Panic(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *logger) Fatal(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *logger) Error(msg string, f gobgplog.Fields) { l.emit(slog.LevelWarn, msg, f) }
func (l *logger) Warn(msg string, f gobgplog.Fields)  { l.emit(slog.LevelDebug, msg, f) }
func (l *logger) Info(msg string, f gobgplog.Fields)  { l.emit(slog.LevelDebug, msg, f) }
func (l *logger) Debug(msg string, f gobgplog.Fields) { l.emit(slog.LevelDebug-4, msg, f) }

// SetLevel is ignored: slog's handler decides.
func (l *logger) SetLevel(gobgplog.LogLevel) {}

// GetLevel says Debug when slog would print Debug, so GoBGP builds its
// debug fields only then.
func (l *logger) GetLevel() gobgplog.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
