// Command simple is pplug's Go API top to bottom, as llama.cpp's
// examples/simple is for its C API: load a model, a plug and a user's
// profile, personalise one prompt and stream the answer.
//
//	go run ./examples/simple -m stories260K.gguf -plug PLUG.gguf -profile examples/profiles/lily.json -p "Once upon a time"
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

func main() {
	model := flag.String("m", "", "GGUF model `FILE`")
	plug := flag.String("plug", "", "plug `FILE` (default: a fresh, untrained plug for the model)")
	prof := flag.String("profile", "examples/profiles/lily.json", "the user's history `FILE`")
	prompt := flag.String("p", "Once upon a time", "the prompt")
	n := flag.Int("n", 32, "tokens to generate")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *model, *plug, *prof, *prompt, *n); err != nil {
		fmt.Fprintln(os.Stderr, "simple:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, modelPath, plugPath, profilePath, prompt string, n int) error {
	// The LLM, frozen; it also encodes the user's history here.
	llm, err := llama.LoadModel(ctx, modelPath, llama.ModelOptions{})
	if err != nil {
		return err
	}
	defer llm.Close()
	enc, err := persona.NewEncoder(llm, persona.EncoderOptions{})
	if err != nil {
		return err
	}
	defer enc.Close()
	// The plug: what `pplug train` writes, or a fresh one.
	plug, err := persona.NewPlugFor(llm, enc, persona.PlugOptions{DefaultPrefix: true})
	if plugPath != "" {
		plug, err = persona.ReadPlug(plugPath)
	}
	if err != nil {
		return err
	}
	backend, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		return err
	}
	defer backend.Close()
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: llm, Plug: plug, Encoder: enc, Backend: backend}
	if err := pz.Check(); err != nil {
		return err
	}
	// The user: their history becomes a persona once, then serves every prompt.
	hist, err := profile.Load(profilePath, profile.Options{})
	if err != nil {
		return err
	}
	user, _, err := pz.Prepare(ctx, hist.Items, nil)
	if err != nil {
		return err
	}
	defer user.Close()
	lc, err := llm.NewContext(llama.ContextOptions{})
	if err != nil {
		return err
	}
	defer lc.Close()
	// One decode-ready turn: [BOS][persona rows][prompt tokens], cut to the
	// window, with the plug's EOS bias.
	b := persona.Builder{LLM: llm, Window: lc.NCtx(), Reserve: n}
	turn, err := b.Build(ctx, user, persona.Conversation{Prompt: prompt})
	if err != nil {
		return err
	}
	so := llama.DefaultSamplerOptions()
	so.Temp = 0 // greedy
	smp, err := llm.NewSampler(turn.SamplerOptions(so))
	if err != nil {
		return err
	}
	defer smp.Close()
	emit := func(text string) error { _, err := io.WriteString(w, text); return err }
	_, err = lc.Generate(ctx, smp, turn.Inputs(), 0, llama.GenerateOptions{MaxTokens: n, Stop: turn.Stops, Emit: emit})
	return err
}
