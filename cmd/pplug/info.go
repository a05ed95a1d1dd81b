package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/llama"
)

func infoCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "also print every metadata key"},
	}
	flags = append(flags, modelFlags()...)
	return &cli.Command{
		Name:      "info",
		Usage:     "print a model's metadata",
		UsageText: "pplug info -m MODEL [--json] [--all]",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			if c.Bool("verbose") {
				setupLogging(true, c.App.ErrWriter)
			}
			m, err := loadModel(c.Context, c, c.App.ErrWriter)
			if err != nil {
				return err
			}
			defer m.Close()
			info := m.Info()
			if !c.Bool("all") {
				info.Metadata = nil
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			printInfo(c.App.Writer, info)
			return nil
		},
	}
}

func printInfo(w io.Writer, in llama.ModelInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("path", in.Path)
	row("architecture", in.Architecture)
	if in.Name != "" {
		row("name", in.Name)
	}
	row("description", in.Description)
	row("parameters", fmt.Sprintf("%d (%s)", in.Params, humanCount(float64(in.Params))))
	row("tensor data", humanBytes(in.Size))
	row("file size", humanBytes(uint64(in.FileSize)))
	row("n_embd", in.NEmbd)
	row("n_layer", in.NLayer)
	row("n_head / n_head_kv", fmt.Sprintf("%d / %d", in.NHead, in.NHeadKV))
	row("n_vocab", fmt.Sprintf("%d (%s)", in.NVocab, in.VocabType))
	row("n_ctx_train", in.NCtxTrain)
	row("bos / eos", fmt.Sprintf("%d / %d", in.BOS, in.EOS))
	if in.TokenEmbdType != "" {
		row("token_embd type", in.TokenEmbdType)
	}
	if in.InputScale != 1 {
		row("input row scale", in.InputScale)
	}
	tmpl := "none"
	if in.ChatTemplate != "" {
		tmpl = fmt.Sprintf("yes (%d bytes)", len(in.ChatTemplate))
	}
	row("chat template", tmpl)
	row("gguf", fmt.Sprintf("v%d, %d tensors", in.GGUFVersion, in.NTensors))
	if len(in.Metadata) > 0 {
		keys := make([]string, 0, len(in.Metadata))
		for k := range in.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := strings.ReplaceAll(in.Metadata[k], "\n", `\n`)
			if len(v) > 120 {
				v = v[:117] + "..."
			}
			row(k, v)
		}
	}
	tw.Flush()
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanCount(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.2fK", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the pinned llama.cpp commit and the CPU features of the build",
		Flags: []cli.Flag{verboseFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if c.Bool("verbose") {
				setupLogging(true, c.App.ErrWriter)
			}
			llama.LoadBackends()
			var devs []string
			for _, d := range llama.Devices() {
				devs = append(devs, d.String())
			}
			v := map[string]string{
				"devices":         strings.Join(devs, "; "),
				"version":         buildinfo.Version,
				"llama.cpp":       buildinfo.LlamaCppCommit,
				"llama.cpp_from":  buildinfo.LlamaCppSource,
				"go":              buildinfo.GoVersion(),
				"system":          llama.SystemInfo(),
				"gpu_offload":     fmt.Sprint(llama.SupportsGPUOffload()),
				"default_threads": fmt.Sprint(llama.DefaultThreads()),
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "pplug %s\n", v["version"])
			fmt.Fprintf(w, "llama.cpp %s (from %s)\n", v["llama.cpp"], v["llama.cpp_from"])
			fmt.Fprintf(w, "built with %s\n", v["go"])
			fmt.Fprintf(w, "system: %s\n", v["system"])
			fmt.Fprintf(w, "default threads: %s, GPU offload: %s\n", v["default_threads"], v["gpu_offload"])
			fmt.Fprintf(w, "devices: %s\n", v["devices"])
			return nil
		},
	}
}
