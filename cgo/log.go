package cgo

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"runtime"
	rcgo "runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// LogLevel is enum ggml_log_level.
type LogLevel int

// Log levels.
const (
	LogDebug LogLevel = C.GGML_LOG_LEVEL_DEBUG
	LogInfo  LogLevel = C.GGML_LOG_LEVEL_INFO
	LogWarn  LogLevel = C.GGML_LOG_LEVEL_WARN
	LogError LogLevel = C.GGML_LOG_LEVEL_ERROR
	logCont  LogLevel = C.GGML_LOG_LEVEL_CONT
)

func (l LogLevel) String() string {
	return enumName(int(l), "LogLevel", []string{LogDebug: "debug", LogInfo: "info", LogWarn: "warn", LogError: "error", logCont: "cont"})
}

// enumName is names[v], or Type(v) for a value without a name.
func enumName(v int, typ string, names []string) string {
	if v >= 0 && v < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// LogFunc receives one complete log line (without its trailing newline).
type LogFunc func(level LogLevel, line string)

var (
	logSink atomic.Pointer[LogFunc]

	// llama.cpp writes a line in pieces (GGML_LOG_LEVEL_CONT) and from several
	// threads; partial lines are assembled here before reaching the sink.
	logMu      sync.Mutex
	logPending []byte
	logLevel   LogLevel

	// logMin is the lowest level that crosses from C into Go.
	logMin atomic.Int32
)

func init() { logMin.Store(int32(LogWarn)) }

var backendOnce sync.Once

// Init initialises the llama.cpp backend once per process and installs the
// log router. It is safe to call from several goroutines.
func Init() {
	backendOnce.Do(func() {
		C.pp_log_install(C.int(logMin.Load()))
		C.llama_backend_init()
		noteDevices() // backends built into the binary (Metal)
	})
}

// SetLogSink sets where complete log lines go (nil drops them) and the lowest
// level that crosses from C into Go (errors always do). The reasons of
// failed calls do not depend on it: see CaptureErrors.
func SetLogSink(f LogFunc, minLevel LogLevel) {
	if f == nil {
		logSink.Store(nil)
	} else {
		logSink.Store(&f)
	}
	logMin.Store(int32(min(minLevel, LogError)))
	C.pp_log_set_min_level(C.int(logMin.Load()))
}

// CaptureErrors runs f and returns the error lines that llama.cpp and ggml
// logged meanwhile on the calling thread, whatever the log level routed to
// Go. f must make its C calls itself (not hand them to another goroutine).
// The capture is per call: concurrent callers each get their own lines.
func CaptureErrors(f func()) []string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 4096)
	var n C.size_t
	C.pp_log_capture_begin()
	func() {
		defer func() { n = C.pp_log_capture_end((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))) }()
		f()
	}()
	var lines []string
	for _, l := range strings.Split(string(buf[:n]), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// captureReason runs f and returns the reason distilled (LoadReason) from
// the error lines logged meanwhile on the calling thread ("" when none).
func captureReason(f func()) string { return LoadReason(CaptureErrors(f)) }

// LoadReason distils the error lines of a failed load into its reason:
// llama.cpp's function-name prefixes go, generic lines ("failed to load
// model") are dropped when a specific one exists, the rest is joined with
// "; ".
func LoadReason(lines []string) string {
	var specific, generic []string
	seen := map[string]bool{}
	for _, l := range lines {
		l = stripLogPrefixes(l)
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		if isGenericLoadError(l) {
			generic = append(generic, l)
		} else {
			specific = append(specific, l)
		}
	}
	if len(specific) == 0 {
		specific = generic
	}
	return strings.Join(specific, "; ")
}

// stripLogPrefixes removes the "function_name: " and "error loading model: "
// prefixes llama.cpp writes in front of a message.
func stripLogPrefixes(l string) string {
	for {
		l = strings.TrimSpace(l)
		i := strings.Index(l, ": ")
		if i <= 0 {
			return l
		}
		head := l[:i]
		if head != "error loading model" && !isIdent(head) {
			return l
		}
		l = l[i+2:]
	}
}

func isIdent(s string) bool {
	for _, r := range s {
		if r != '_' && r != ':' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return strings.Contains(s, "_") // llama_model_load, gguf_init_from_file_impl: not plain words
}

func isGenericLoadError(l string) bool {
	return strings.HasPrefix(l, "failed to load model") || strings.HasPrefix(l, "llama_model_loader: failed to load model")
}

//export ppGoLog
func ppGoLog(level C.int, text *C.char) {
	s := C.GoString(text)
	logMu.Lock()
	if LogLevel(level) != logCont {
		logLevel = LogLevel(level)
	}
	logPending = append(logPending, s...)
	var lines []string
	for {
		i := bytes.IndexByte(logPending, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(logPending[:i]))
		logPending = logPending[i+1:]
	}
	if len(logPending) == 0 {
		logPending = nil
	}
	lvl := logLevel
	logMu.Unlock()

	for _, line := range lines {
		if line == "" {
			continue
		}
		if f := logSink.Load(); f != nil {
			(*f)(lvl, line)
		}
	}
}

//export ppGoProgress
func ppGoProgress(progress C.float, handle C.uintptr_t) C.bool {
	f, ok := rcgo.Handle(handle).Value().(func(float32) bool)
	if !ok {
		return true
	}
	return C.bool(f(float32(progress)))
}
