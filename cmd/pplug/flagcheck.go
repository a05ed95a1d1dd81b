package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// enumFlags are the string flags that take one of a set of values, with
// the same meaning in every command that has them. conventions checks them
// before a command runs, given or not, so that a value no code path reads
// in this run (--plugin-device without --plug) is refused all the same, and
// before any model is loaded.
var enumFlags = map[string]func(string) error{
	"plugin-device": persona.CheckPluginDevice,
	"device":        checkDeviceFlag,
	"n-gpu-layers":  checkGPULayers,
	"split-mode":    checkSplitMode,
	"pooling":       func(s string) error { _, err := llama.ParsePooling(s); return err },
	"method":        checkMethodName,
	"task":          checkTaskName,
}

func checkMethodName(s string) error {
	if s == "auto" || s == "" {
		return nil
	}
	_, err := persona.ParseMethod(s)
	return err
}

func checkTaskName(s string) error {
	if s == "" {
		return nil
	}
	_, err := lamp.ParseTask(s)
	return err
}

// checkEnums checks the string flags of enumFlags among flags.
func checkEnums(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		if _, ok := f.(*cli.StringFlag); !ok {
			continue
		}
		name := f.Names()[0]
		if name == "device" && !c.IsSet(name) {
			continue // every GPU; an empty -dev "" is an error
		}
		if check, ok := enumFlags[name]; ok {
			if err := check(c.String(name)); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
	}
	return nil
}

// listsDevices reports whether --list-devices was given to a command that
// has it: it prints the devices instead of running.
func listsDevices(c *cli.Context, flags []cli.Flag) bool {
	for _, f := range flags {
		if f.Names()[0] == "list-devices" {
			return c.Bool("list-devices")
		}
	}
	return false
}
