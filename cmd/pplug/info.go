package main

import (
	"context"
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
		Action:    runInfo,
	}
}

// infoOptions are info's flags, read once.
type infoOptions struct {
	Model modelConfig
	JSON  bool
	All   bool // every metadata key
}

func runInfo(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	o := infoOptions{JSON: c.Bool("json"), All: c.Bool("all")}
	var err error
	if o.Model, err = modelConfigFrom(c); err != nil {
		return err
	}
	return o.run(c.Context, c.App.Writer, c.App.ErrWriter)
}

// run loads the model and prints its metadata.
func (o infoOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	m, err := o.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	info := m.Info()
	if !o.All {
		info.Metadata = nil
	}
	if o.JSON {
		v, err := infoJSON(info)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	printInfo(stdout, info)
	return nil
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
			v := versionInfo{
				Devices:        []versionDevice{},
				Version:        buildinfo.Version,
				LlamaCpp:       buildinfo.LlamaCppCommit,
				LlamaCppFrom:   buildinfo.LlamaCppSource,
				Go:             buildinfo.GoVersion(),
				System:         llama.SystemInfo(),
				GPUOffload:     llama.SupportsGPUOffload(),
				DefaultThreads: llama.DefaultThreads(),
			}
			for _, d := range llama.Devices() {
				v.Devices = append(v.Devices, versionDevice{Name: d.Name, Description: d.Description, Backend: d.Backend,
					GPU: d.GPU, MemFree: d.MemFree, MemTotal: d.MemTotal})
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "pplug %s\n", v.Version)
			fmt.Fprintf(w, "llama.cpp %s (from %s)\n", v.LlamaCpp, v.LlamaCppFrom)
			fmt.Fprintf(w, "built with %s\n", v.Go)
			fmt.Fprintf(w, "system: %s\n", v.System)
			fmt.Fprintf(w, "default threads: %d, GPU offload: %t\n", v.DefaultThreads, v.GPUOffload)
			fmt.Fprintf(w, "devices: %s\n", strings.Join(devs, "; "))
			return nil
		},
	}
}

// versionInfo is `pplug version --json`.
type versionInfo struct {
	Version        string          `json:"version"`
	LlamaCpp       string          `json:"llama.cpp"`
	LlamaCppFrom   string          `json:"llama.cpp_from"`
	Go             string          `json:"go"`
	System         string          `json:"system"`
	GPUOffload     bool            `json:"gpu_offload"`
	DefaultThreads int             `json:"default_threads"`
	Devices        []versionDevice `json:"devices"`
}

type versionDevice struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Backend     string `json:"backend"`
	GPU         bool   `json:"gpu"`
	MemFree     uint64 `json:"mem_free"`
	MemTotal    uint64 `json:"mem_total"`
}

// modelInfoJSON is `pplug info --json`: llama.ModelInfo with the GGUF
// metadata in its own types (numbers, booleans, strings, arrays) instead of
// llama.cpp's rendering of every value as a string.
type modelInfoJSON struct {
	llama.ModelInfo
	FileType any            `json:"file_type,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

func infoJSON(info llama.ModelInfo) (modelInfoJSON, error) {
	out := modelInfoJSON{ModelInfo: info}
	keys := []string{"general.file_type"}
	for k := range info.Metadata {
		keys = append(keys, k)
	}
	vals, err := llama.MetadataValues(info.Path, keys)
	if err != nil {
		return out, fmt.Errorf("read the metadata of %s: %w", info.Path, err)
	}
	out.FileType = vals["general.file_type"]
	if info.Metadata != nil {
		out.Metadata = map[string]any{}
		for k, v := range info.Metadata {
			if tv, ok := vals[k]; ok {
				out.Metadata[k] = tv
			} else {
				out.Metadata[k] = v
			}
		}
	}
	return out, nil
}
