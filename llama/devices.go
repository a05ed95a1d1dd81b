package llama

import (
	"fmt"
	"strings"

	"github.com/pplug/pplug/cgo"
)

// DeviceNone, as the only entry of ModelOptions.Devices, keeps every layer
// on the CPU (llama.cpp's `-dev none`).
const DeviceNone = "none"

// GPULayersAll offloads every layer (llama.cpp's `-ngl all`); any larger
// count means the same.
const GPULayersAll = -1

// SplitMode is how a model spreads over several GPUs (llama.cpp's -sm).
// The zero value is llama.cpp's default, SplitLayer.
type SplitMode int

// Split modes.
const (
	SplitLayer SplitMode = iota // layers and KV cache split across GPUs
	SplitNone                   // one GPU: ModelOptions.MainGPU
	SplitRow                    // rows split across GPUs where the backend can
)

var splitNames = map[SplitMode]string{SplitLayer: "layer", SplitNone: "none", SplitRow: "row"}

func (m SplitMode) String() string {
	if s, ok := splitNames[m]; ok {
		return s
	}
	return fmt.Sprintf("SplitMode(%d)", int(m))
}

// ParseSplitMode reads none, layer or row.
func ParseSplitMode(s string) (SplitMode, error) {
	for m, n := range splitNames {
		if n == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("split mode %q: want none, layer or row", s)
}

func (m SplitMode) cgo() cgo.SplitMode {
	switch m {
	case SplitNone:
		return cgo.SplitNone
	case SplitRow:
		return cgo.SplitRow
	}
	return cgo.SplitLayer
}

// OffloadDevices lists the devices a model can offload layers to: every
// loaded device that is not the CPU, in ggml's order.
func OffloadDevices() []Device {
	var out []Device
	for _, d := range Devices() {
		if !d.host {
			out = append(out, d)
		}
	}
	return out
}

// ParseDeviceList reads llama.cpp's -dev value: device names separated by
// commas, or "none". Each name must be an offload device; an unknown one
// is an error that lists the available devices.
func ParseDeviceList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == DeviceNone {
		return []string{DeviceNone}, nil
	}
	if s == "" {
		return nil, fmt.Errorf("empty device list: give device names separated by commas, or none (available: %s)", availableDevices())
	}
	names := strings.Split(s, ",")
	for i, n := range names {
		names[i] = strings.TrimSpace(n)
		if err := checkDevice(names[i]); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func checkDevice(name string) error {
	for _, d := range OffloadDevices() {
		if d.Name == name {
			return nil
		}
	}
	return fmt.Errorf("unknown device %q: available: %s", name, availableDevices())
}

// availableDevices names the offload devices for an error message.
func availableDevices() string {
	var names []string
	for _, d := range OffloadDevices() {
		names = append(names, d.Name)
	}
	if len(names) == 0 {
		return "none (no GPU device: build a backend with `make gpu` or `make vulkan`; Mesa's software Vulkan device needs GGML_VK_VISIBLE_DEVICES=0)"
	}
	return strings.Join(names, ", ") + " or none"
}

// deviceParams checks opts' devices and sets them, the split mode and the
// main GPU in p.
func deviceParams(opts ModelOptions, p *cgo.ModelParams) error {
	if len(opts.Devices) == 1 && opts.Devices[0] == DeviceNone {
		p.NoDevices = true
	} else if opts.Devices != nil {
		for _, n := range opts.Devices {
			if err := checkDevice(n); err != nil {
				return err
			}
		}
		p.Devices = opts.Devices
	}
	n := len(opts.Devices)
	if opts.Devices == nil {
		n = len(OffloadDevices())
	}
	if p.NoDevices {
		n = 0
	}
	p.SplitMode, p.MainGPU = opts.SplitMode.cgo(), int32(opts.MainGPU)
	if opts.MainGPU < 0 || (opts.SplitMode == SplitNone && n > 0 && opts.MainGPU >= n) {
		return fmt.Errorf("main GPU %d: want 0 up to %d (the model's devices: %d)", opts.MainGPU, max(n-1, 0), n)
	}
	if n == 0 {
		// llama.cpp refuses split mode none without a device to hold the
		// model; with no device there is nothing to split.
		p.SplitMode, p.MainGPU = cgo.SplitLayer, 0
	}
	return nil
}
