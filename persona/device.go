package persona

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
)

// BackendOptions choose where the plug-in's projector and aggregation run.
type BackendOptions struct {
	// PluginDevice: "" or "auto" follows the model's device
	// (llama.Model.MainDevice): the Go kernels for the CPU, the CUDA or
	// Metal kernel library for those backends (the ggml graph on that
	// device when the library is missing), the ggml graph on any other
	// device (Vulkan). "cpu", "cuda[:N]" and "metal" force a kernels
	// backend (kernels.Open); "ggml" forces the ggml graph on the model's
	// device.
	PluginDevice string
	// Threads for the CPU work (<= 0: GOMAXPROCS).
	Threads int
	// Logger receives the path chosen (Info) and fallbacks; nil: slog.Default().
	Logger *slog.Logger
}

// CheckPluginDevice reports whether OpenBackend understands dev, without
// opening anything (the check a command line makes before loading a model).
func CheckPluginDevice(dev string) error {
	if strings.EqualFold(strings.TrimSpace(dev), "ggml") {
		return nil
	}
	if err := kernels.CheckDevice(dev); err != nil {
		return fmt.Errorf("%w; or ggml: the plug-in as a ggml graph on the model's device", err)
	}
	return nil
}

// OpenBackend opens the plug-in's backend for a model on m's device (see
// BackendOptions) and logs which path runs it (PluginPath).
func OpenBackend(m *llama.Model, o BackendOptions) (kernels.Backend, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	kopts := kernels.Options{Threads: o.Threads, Logger: log}
	dev := strings.ToLower(strings.TrimSpace(o.PluginDevice))
	var b kernels.Backend
	var err error
	switch dev {
	case "", "auto":
		b, err = followModel(m.MainDevice(), kopts)
	case "ggml":
		b, err = openGraph(m.MainDevice(), o.Threads)
	default:
		b, err = kernels.Open(dev, kopts)
	}
	if err != nil {
		return nil, fmt.Errorf("plug-in device %q: %w", o.PluginDevice, err)
	}
	log.Info("plug-in path: "+PluginPath(b), "backend", b.Name(), "device", b.Device())
	return b, nil
}

// followModel picks the plug-in's backend for a model on d.
func followModel(d llama.Device, kopts kernels.Options) (kernels.Backend, error) {
	var lib string
	switch d.Backend {
	case "CPU":
		return kernels.Open("cpu", kopts)
	case "CUDA":
		lib = "cuda:" + strings.TrimPrefix(d.Name, "CUDA")
	case "Metal":
		lib = "metal"
	default:
		return openGraph(d, kopts.Threads)
	}
	b, err := kernels.Open(lib, kopts)
	if err == nil {
		return b, nil
	}
	kopts.Logger.Info("plug-in: no kernel library for the model's device, using the ggml graph", "device", d.Name, "reason", err)
	return openGraph(d, kopts.Threads)
}

// openGraph runs the plug-in as ggml graphs on device d.
func openGraph(d llama.Device, threads int) (kernels.Backend, error) {
	e, err := llama.NewPluginGraph(d.Name, threads)
	if err != nil {
		return nil, fmt.Errorf("the plug-in's ggml graph: %w", err)
	}
	return kernels.NewGraph(e, threads), nil
}

// PluginPath names the path a backend runs the plug-in on, for logs: "go
// cpu", "cuda kernel", "metal kernel" or "ggml graph on <device>".
func PluginPath(b kernels.Backend) string {
	switch b.Name() {
	case "cpu":
		return "go cpu"
	case "ggml":
		return "ggml graph on " + b.Device()
	}
	return b.Name() + " kernel"
}
