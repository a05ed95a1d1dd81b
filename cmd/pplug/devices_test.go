package main

import (
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
)

// deviceCommands are the commands that take llama.cpp's device flags.
var deviceCommands = []string{"generate", "chat", "serve", "bench", "embed", "train"}

// TestListDevices: --list-devices prints the devices ggml sees, the CPU
// among them, and exits 0 without a model or any other flag.
func TestListDevices(t *testing.T) {
	for _, cmd := range deviceCommands {
		code, out, errs := pplug(t, "", cmd, "--list-devices")
		if code != 0 {
			t.Fatalf("%s --list-devices: exit %d: %s", cmd, code, errs)
		}
		if !strings.HasPrefix(out, "Available devices:\n") || !strings.Contains(out, "  CPU: ") || !strings.Contains(out, " MiB free)") {
			t.Errorf("%s --list-devices printed %q", cmd, out)
		}
		for _, d := range llama.OffloadDevices() {
			if !strings.Contains(out, "  "+d.Name+": "+d.Description) {
				t.Errorf("%s --list-devices lacks %s:\n%s", cmd, d.Name, out)
			}
		}
	}
}

// TestDeviceFlagsRefused: a bad device value exits 2 naming the flag and
// what it accepts, in every command that has the flags, before any model
// is read.
func TestDeviceFlagsRefused(t *testing.T) {
	cases := [][]string{
		{"-dev", "NoSuchGPU", `--device: unknown device "NoSuchGPU": available: `},
		{"-dev", "", "--device: empty device list"},
		{"-ngl", "lots", `--n-gpu-layers: "lots": want a number of layers (0: none), auto or all`},
		{"-ngl", "-3", `"-3": want a number of layers`},
		{"-sm", "tensor", `split mode "tensor": want none, layer or row`},
		{"-mg", "-1", "--main-gpu -1"},
	}
	for _, cmd := range deviceCommands {
		for _, tc := range cases {
			code, _, errs := pplug(t, "", cmd, "-m", "absent.gguf", tc[0], tc[1])
			if code != 2 || !strings.Contains(errs, tc[2]) {
				t.Errorf("%s %s %q: exit %d: %s\nwant exit 2 and %q", cmd, tc[0], tc[1], code, errs, tc[2])
			}
		}
	}
}

// TestDeviceNoneRunsOnCPU: -dev none -ngl 99 keeps the model on the CPU
// and gives the CPU's greedy text; every -ngl form loads.
func TestDeviceNoneRunsOnCPU(t *testing.T) {
	model := testenv.Stories260K(t)
	gen := func(extra ...string) string {
		args := append([]string{"generate", "-m", model, "-p", "Once upon a time", "-n", "16", "--temp", "0", "-t", "1"}, extra...)
		code, out, errs := pplug(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, errs)
		}
		return out
	}
	want := gen("-ngl", "0")
	for _, extra := range [][]string{{"-dev", "none", "-ngl", "99"}, {"-dev", "none", "-ngl", "all", "-sm", "none"}, {"-dev", "none"}} {
		if got := gen(extra...); got != want {
			t.Errorf("%v: %q, want the CPU's %q", extra, got, want)
		}
	}
	if !strings.HasPrefix(want, ", there was a little girl") {
		t.Errorf("greedy text %q", want)
	}
}

func TestGPULayersAuto(t *testing.T) {
	gpu := []llama.Device{{Name: "Vulkan0", Backend: "Vulkan", GPU: true}}
	for _, tc := range []struct {
		flag string
		devs []llama.Device
		want int
	}{
		{"auto", nil, 0}, {"auto", gpu, llama.GPULayersAll}, {"-1", gpu, llama.GPULayersAll},
		{"all", nil, llama.GPULayersAll}, {"0", gpu, 0}, {"12", gpu, 12},
	} {
		n, err := parseGPULayers(tc.flag)
		if err != nil {
			t.Fatalf("%s: %v", tc.flag, err)
		}
		if got := resolveGPULayers(n, tc.devs); got != tc.want {
			t.Errorf("-ngl %s with %d devices: %d, want %d", tc.flag, len(tc.devs), got, tc.want)
		}
	}
}

// TestTrainGetsDevices: train passes the devices its model uses, by name
// (none on the CPU), and the resolved layer count into train.Options.
func TestTrainGetsDevices(t *testing.T) {
	var got []string
	var ngl int
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if cmd.Name != "train" {
			continue
		}
		cmd.Action = func(c *cli.Context) error {
			o, err := trainOptionsFromFlags(c)
			got, ngl = o.Devices, o.GPULayers
			return err
		}
	}
	if err := app.Run([]string{"pplug", "train", "-dev", "none", "-ngl", "all"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || ngl != llama.GPULayersAll {
		t.Errorf("-dev none -ngl all: devices %v, layers %d; want none, all", got, ngl)
	}
	if err := app.Run([]string{"pplug", "train", "-ngl", "0"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || ngl != 0 {
		t.Errorf("-ngl 0: devices %v, layers %d", got, ngl)
	}
	want := []string{}
	for _, d := range llama.OffloadDevices() {
		want = append(want, d.Name)
	}
	if err := app.Run([]string{"pplug", "train"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("default: devices %v, want the model's %v", got, want)
	}
}
