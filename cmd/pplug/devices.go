package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/llama"
)

// Devices the llama.cpp way: -dev, -ngl, -sm, -mg and --list-devices mean
// what they mean in llama-cli and llama-server.

// gpuLayersAuto is -ngl's default, as in llama.cpp since it took auto and
// all: every layer on the model's devices when there is one, else none.
const gpuLayersAuto = "auto"

func deviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "device", Aliases: []string{"dev"}, Usage: "`DEV[,DEV]`: devices to offload to, or none (default: every GPU; see --list-devices)"},
		&cli.StringFlag{Name: "n-gpu-layers", Aliases: []string{"ngl"}, Value: gpuLayersAuto, Usage: "most layers to store in VRAM: a number, auto (all when a GPU is used) or all"},
		&cli.StringFlag{Name: "split-mode", Aliases: []string{"sm"}, Value: "layer", Usage: "how to split the model across GPUs: none, layer or row"},
		&cli.IntFlag{Name: "main-gpu", Aliases: []string{"mg"}, Value: 0, Usage: "the GPU that holds the model with --split-mode none (index among the model's devices)"},
		&cli.BoolFlag{Name: "list-devices", Usage: "print the available devices and exit"},
	}
}

// checkDeviceFlag checks -dev before any work (the backends load first so
// that their devices are known).
func checkDeviceFlag(s string) error {
	llama.LoadBackends()
	_, err := llama.ParseDeviceList(s)
	return err
}

func checkGPULayers(s string) error {
	_, err := parseGPULayers(s)
	return err
}

func checkSplitMode(s string) error {
	_, err := llama.ParseSplitMode(s)
	return err
}

// parseGPULayers reads -ngl: a count, auto (-1, as llama.cpp) or all.
// auto resolves later, once the devices are known; it returns -2 for it.
func parseGPULayers(s string) (int, error) {
	switch s {
	case gpuLayersAuto, "", "-1":
		return -2, nil
	case "all":
		return llama.GPULayersAll, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a number of layers (0: none), auto or all", s)
	}
	return n, nil
}

// deviceOptions are -dev, -ngl, -sm and -mg as llama.ModelOptions fields.
func deviceOptions(c *cli.Context) (llama.ModelOptions, error) {
	var o llama.ModelOptions
	llama.LoadBackends()
	if s := c.String("device"); c.IsSet("device") {
		devs, err := llama.ParseDeviceList(s)
		if err != nil {
			return o, usagef("--device: %w", err)
		}
		o.Devices = devs
	}
	ngl, err := parseGPULayers(c.String("n-gpu-layers"))
	if err != nil {
		return o, usagef("--n-gpu-layers %w", err)
	}
	if o.SplitMode, err = llama.ParseSplitMode(c.String("split-mode")); err != nil {
		return o, usagef("--split-mode: %w", err)
	}
	o.MainGPU = c.Int("main-gpu")
	if o.MainGPU < 0 {
		return o, usagef("--main-gpu %d: want 0 or more (an index among the model's devices)", o.MainGPU)
	}
	o.GPULayers = resolveGPULayers(ngl, modelDevices(o))
	return o, nil
}

// resolveGPULayers turns auto into all or none.
func resolveGPULayers(ngl int, devices []llama.Device) int {
	if ngl != -2 {
		return ngl
	}
	if len(devices) == 0 {
		return 0
	}
	return llama.GPULayersAll
}

// modelDevices are the devices a model loaded with o would use.
func modelDevices(o llama.ModelOptions) []llama.Device {
	all := llama.OffloadDevices()
	if o.Devices == nil {
		return all
	}
	var out []llama.Device
	for _, name := range o.Devices {
		for _, d := range all {
			if d.Name == name {
				out = append(out, d)
			}
		}
	}
	return out
}

// listDevices prints the devices as llama.cpp's --list-devices does, the
// CPU last, which runs what no device takes.
func listDevices(w io.Writer) {
	llama.LoadBackends()
	fmt.Fprintln(w, "Available devices:")
	var host []llama.Device
	for _, d := range llama.Devices() {
		if d.Backend == "CPU" {
			host = append(host, d)
			continue
		}
		printDevice(w, d)
	}
	for _, d := range host {
		printDevice(w, d)
	}
}

func printDevice(w io.Writer, d llama.Device) {
	fmt.Fprintf(w, "  %s: %s (%d MiB, %d MiB free)\n", d.Name, d.Description, d.MemTotal>>20, d.MemFree>>20)
}

func pluginDeviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "plugin-device", Value: "auto", Usage: "where the plug-in's projector and aggregation run: auto (the model's device), cpu, cuda, metal or ggml (a ggml graph on the model's device)"}
}
