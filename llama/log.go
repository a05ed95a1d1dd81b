package llama

import (
	"context"
	"log/slog"

	"github.com/pplug/pplug/cgo"
)

// SetLogger sends llama.cpp's and ggml's log lines at or above level to l.
// A nil logger silences them (the default). Error lines are still kept to
// enrich the errors this package returns.
func SetLogger(l *slog.Logger, level slog.Level) {
	if l == nil {
		cgo.SetLogSink(nil, cgo.LogError)
		return
	}
	sink := func(lvl cgo.LogLevel, line string) {
		sl := ggmlToSlog(lvl)
		if sl >= level {
			l.Log(context.Background(), sl, line, "src", "llama.cpp")
		}
	}
	cgo.SetLogSink(sink, slogToGGML(level))
}

func ggmlToSlog(l cgo.LogLevel) slog.Level {
	switch {
	case l >= cgo.LogError:
		return slog.LevelError
	case l >= cgo.LogWarn:
		return slog.LevelWarn
	case l >= cgo.LogInfo:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

func slogToGGML(l slog.Level) cgo.LogLevel {
	switch {
	case l >= slog.LevelError:
		return cgo.LogError
	case l >= slog.LevelWarn:
		return cgo.LogWarn
	case l >= slog.LevelInfo:
		return cgo.LogInfo
	default:
		return cgo.LogDebug
	}
}
