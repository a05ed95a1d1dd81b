package llama

import (
	"context"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

func TestParseDeviceList(t *testing.T) {
	got, err := ParseDeviceList("none")
	if err != nil || len(got) != 1 || got[0] != DeviceNone {
		t.Fatalf("none: %v, %v", got, err)
	}
	for _, bad := range []string{"", "NoSuchGPU0", "none,NoSuchGPU0"} {
		_, err := ParseDeviceList(bad)
		if err == nil {
			t.Fatalf("%q: no error", bad)
		}
		if !strings.Contains(err.Error(), "available:") && !strings.Contains(err.Error(), "available: ") {
			t.Errorf("%q: %v does not list the available devices", bad, err)
		}
	}
	for _, d := range Devices() {
		if d.Backend == "CPU" {
			if _, err := ParseDeviceList(d.Name); err == nil {
				t.Errorf("%s is the CPU, not an offload device, yet it was accepted", d.Name)
			}
		}
	}
}

func TestParseSplitMode(t *testing.T) {
	for _, s := range []string{"none", "layer", "row"} {
		m, err := ParseSplitMode(s)
		if err != nil || m.String() != s {
			t.Errorf("%s: %v, %v", s, m, err)
		}
	}
	if _, err := ParseSplitMode("tensor"); err == nil || !strings.Contains(err.Error(), "none, layer or row") {
		t.Errorf("tensor: %v", err)
	}
}

// TestDeviceOptionsLoad loads stories260K with the device options a CPU
// user gives: every one of them runs (on the CPU), a bad one fails naming
// the problem before llama.cpp sees it.
func TestDeviceOptionsLoad(t *testing.T) {
	path := testenv.Stories260K(t)
	good := []ModelOptions{
		{Devices: []string{DeviceNone}, GPULayers: 99},
		{Devices: []string{DeviceNone}, GPULayers: GPULayersAll, SplitMode: SplitNone},
		{GPULayers: GPULayersAll, SplitMode: SplitRow},
	}
	if len(OffloadDevices()) == 0 {
		good = append(good, ModelOptions{GPULayers: GPULayersAll, SplitMode: SplitNone})
	}
	for _, o := range good {
		m, err := LoadModel(context.Background(), path, o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		m.Close()
	}
	bad := map[string]ModelOptions{
		`unknown device "Nope"`: {Devices: []string{"Nope"}},
		"main GPU -1":           {MainGPU: -1},
	}
	for want, o := range bad {
		_, err := LoadModel(context.Background(), path, o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error with %q", o, err, want)
		}
	}
}
