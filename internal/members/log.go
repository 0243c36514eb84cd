package members

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns memberlist's log lines, "[LEVEL] memberlist: text",
// into slog records. memberlist only accepts a *log.Logger, and each of its
// Printf calls arrives here as a single Write.
type slogWriter struct {
	logger *slog.Logger
}

// newStdLogger returns a *log.Logger for memberlist that writes to logger.
// No prefix or flags: slog adds its own time.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(slogWriter{logger: logger}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	level, text := parseLine(string(bytes.TrimRight(p, "\r\n")))
	// Fixed message, variable text in a key, as for every other log line.
	w.logger.Log(context.Background(), level, "memberlist log", "text", text)
	return len(p), nil
}

// parseLine splits "[LEVEL] memberlist: text" into a slog level and text.
// memberlist's levels are TRACE, DEBUG, INFO, WARN and ERR; a line without
// a recognised level is kept whole and logged at Info so nothing is lost.
func parseLine(line string) (slog.Level, string) {
	rest, ok := strings.CutPrefix(line, "[")
	if !ok {
		return slog.LevelInfo, line
	}
	tag, text, ok := strings.Cut(rest, "]")
	if !ok {
		return slog.LevelInfo, line
	}
	var level slog.Level
	switch tag {
	case "TRACE", "DEBUG":
		level = slog.LevelDebug
	case "INFO":
		level = slog.LevelInfo
	case "WARN":
		level = slog.LevelWarn
	case "ERR", "ERROR":
		level = slog.LevelError
	default:
		return slog.LevelInfo, line
	}
	text = strings.TrimPrefix(strings.TrimSpace(text), "memberlist: ")
	return level, text
}
