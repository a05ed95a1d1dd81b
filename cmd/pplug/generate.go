package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

func generateCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt `TEXT` (\"-\" reads standard input)"},
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the prompt from `FILE`"},
		&cli.IntFlag{Name: "n-predict", Aliases: []string{"n"}, Value: -1, Usage: "tokens to generate (-1: until end of text or a full context)"},
		&cli.BoolFlag{Name: "timings", Usage: "print prompt and generation speed to stderr"},
		&cli.BoolFlag{Name: "echo", Usage: "print the prompt before the generated text"},
		&cli.BoolFlag{Name: "ignore-eos", Usage: "keep generating past end-of-text tokens"},
		&cli.BoolFlag{Name: "explain", Usage: "print what personalised the answer: the history items the persona weighs most (PPlug), the items retrieved into the prompt with their BM25 scores (retrieval)"},
		&cli.IntFlag{Name: "explain-k", Value: 5, Usage: "how many weighted items --explain prints"},
		&cli.BoolFlag{Name: "verbose-prompt", Usage: "print the final input to stderr: the prompt as the model reads it (with the retrieved items) and where BOS and the persona rows go, token by token"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	flags = append(flags, samplingFlags()...)
	flags = append(flags, personaFlags()...)
	return &cli.Command{
		Name:      "generate",
		Aliases:   []string{"gen"},
		Usage:     "generate text from a prompt, streaming it to stdout (personalised with --profile [--plug])",
		ArgsUsage: "[PROMPT]",
		UsageText: "pplug generate -m MODEL -p PROMPT [options]\n" +
			"   pplug generate -m MODEL [options] PROMPT   (the words after the flags are the prompt)\n" +
			"   pplug generate -m MODEL -p PROMPT --profile HISTORY.json --plug PLUG.gguf [--encoder BGE.gguf] [--explain]\n" +
			"   pplug generate -m MODEL -p PROMPT --profile HISTORY.json   (retrieval: top-k history items in the prompt)",
		Flags:  flags,
		Action: runGenerate,
	}
}

// promptGiven reports whether the command line names a prompt (-p, -f or
// positional arguments).
func promptGiven(c *cli.Context) bool {
	return c.IsSet("prompt") || c.String("file") != "" || c.NArg() > 0
}

// readPrompt takes the prompt from -p, -p - (stdin), -f or the positional
// arguments (joined with spaces, as `ollama run MODEL PROMPT` does).
func readPrompt(c *cli.Context) (string, error) {
	p, f := c.String("prompt"), c.String("file")
	sources := 0
	for _, given := range []bool{c.IsSet("prompt"), f != "", c.NArg() > 0} {
		if given {
			sources++
		}
	}
	if sources > 1 {
		if c.NArg() > 0 {
			return "", usagef("give the prompt with -p, -f or as arguments, not several (unexpected argument %q)", c.Args().First())
		}
		return "", usagef("give the prompt with -p or -f, not both")
	}
	var text string
	switch {
	case c.NArg() > 0:
		text = strings.Join(c.Args().Slice(), " ")
	case f != "":
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read prompt file: %w", err)
		}
		text = string(b)
	case p == "-":
		b, err := io.ReadAll(c.App.Reader)
		if err != nil {
			return "", fmt.Errorf("read prompt from stdin: %w", err)
		}
		text = string(b)
	default:
		text = p
	}
	if !utf8.ValidString(text) {
		return "", fmt.Errorf("the prompt is not valid UTF-8 (bad byte at offset %d)", badUTF8Offset(text))
	}
	return text, nil
}

// checkPromptGiven refuses an empty (or blank) prompt, after standard
// input was read: generating from nothing is never what was meant. A
// --question-id without a prompt brings the question's input instead.
func checkPromptGiven(c *cli.Context, prompt string) error {
	if strings.TrimSpace(prompt) != "" || (c.String("question-id") != "" && !promptGiven(c)) {
		return nil
	}
	what := "the prompt is empty"
	switch {
	case c.String("prompt") == "-":
		what = "the prompt is empty (standard input gave no text)"
	case c.String("file") != "":
		what = fmt.Sprintf("the prompt is empty (%s holds no text)", c.String("file"))
	case !promptGiven(c):
		what = "no prompt given"
	}
	return usagef("%s: give it with -p TEXT, -f FILE, -p - (standard input) or as arguments, or --question-id for a LaMP question's input", what)
}

func badUTF8Offset(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return i
			}
		}
	}
	return -1
}

func runGenerate(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	prompt, err := readPrompt(c)
	if err != nil {
		return err
	}
	if err := checkPromptGiven(c, prompt); err != nil {
		return err
	}
	sopts, err := samplerOptions(c)
	if err != nil {
		return err
	}
	stops, err := stopStrings(c)
	if err != nil {
		return err
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	if n := c.Int("n-predict"); n < -1 {
		return usagef("--n-predict must be -1 or more")
	}
	if k := c.Int("explain-k"); k < 1 {
		return usagef("--explain-k must be 1 or more")
	}
	if _, err := checkPersonaFlags(c); err != nil {
		return err
	}

	ctx := c.Context
	m, err := loadModel(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()

	ps, err := setupPersona(ctx, c, m, stderr)
	if err != nil {
		return err
	}
	defer ps.Close()
	if !promptGiven(c) && ps.prof != nil && ps.prof.Query != "" {
		// A LaMP question brings its own input: it is the prompt.
		prompt = ps.prof.Query
		fmt.Fprintf(stderr, "prompt: the input of question %s (-p gives another)\n", ps.prof.QuestionID)
	}
	applyThreadDefault(c, m, &copts)
	lctx, err := m.NewContext(copts)
	if err != nil {
		return err
	}
	defer lctx.Close()
	turn, err := ps.turn(ctx, prompt, lctx.NCtxSeq())
	switch {
	case errors.Is(err, persona.ErrEmptyInput):
		return usagef("the prompt is empty and the model has no BOS token to start from: give a prompt with -p")
	case errors.Is(err, llama.ErrContextFull):
		return fmt.Errorf("%w (raise -c/--ctx-size up to the model's %d, or shorten the prompt)", err, m.Info().NCtxTrain)
	case err != nil:
		return err
	}
	if c.Bool("explain") {
		ps.explain(stderr, turn.Request, c.Int("explain-k"))
	}
	if c.Bool("verbose-prompt") {
		printPrompt(stderr, m, turn)
	}
	// The plug's learned length prior, as in training and eval.
	sopts = turn.SamplerOptions(sopts)
	smp, err := m.NewSampler(sopts)
	if err != nil {
		return err
	}
	defer smp.Close()
	slog.Debug("generate", "input_positions", turn.Positions(), "n_ctx", lctx.NCtx(), "threads", lctx.Threads(), "sampler", fmt.Sprintf("%+v", sopts))

	if c.Bool("echo") {
		fmt.Fprint(stdout, prompt)
	}
	res, err := lctx.Generate(ctx, smp, turn.Inputs(), 0, llama.GenerateOptions{
		MaxTokens: c.Int("n-predict"),
		IgnoreEOG: c.Bool("ignore-eos"),
		Stop:      stops,
		Emit: func(s string) error {
			_, err := io.WriteString(stdout, s)
			return err
		},
	})
	fmt.Fprintln(stdout)
	if res.Stop == llama.StopContext {
		fmt.Fprintf(stderr, "pplug: stopped: the context window of %d is full (raise -c/--ctx-size)\n", lctx.NCtx())
	}
	if c.Bool("timings") {
		printTimings(stderr, res.Stats)
	}
	if err != nil && !errors.Is(err, llama.ErrContextFull) {
		return err
	}
	return nil
}

func printTimings(w io.Writer, s llama.Stats) {
	fmt.Fprintf(w, "prompt:     %5d tokens in %9.2f ms (%9.2f tokens/s)\n", s.PromptRows, ms(s.PromptTime.Seconds()), s.PromptTPS())
	fmt.Fprintf(w, "generation: %5d tokens in %9.2f ms (%9.2f tokens/s)\n", s.GenTokens, ms(s.GenTime.Seconds()), s.GenTPS())
	fmt.Fprintf(w, "time to first token: %.2f ms\n", ms(s.TimeToFirstToken.Seconds()))
}

func ms(sec float64) float64 { return sec * 1000 }

// printPrompt prints the input of a turn position by position, as
// llama-cli's --verbose-prompt does, with the persona rows in their place
// (persona.Turn.Slots).
func printPrompt(w io.Writer, m *llama.Model, t *persona.Turn) {
	fmt.Fprintf(w, "prompt (%s): %q\n", t.Method, t.Text)
	l := t.Layout
	if l.NRows() == 0 {
		fmt.Fprintf(w, "number of positions in the input = %d (tokens)\n", len(t.Tokens))
		for i, tk := range t.Tokens {
			fmt.Fprintf(w, "%6d -> %6d %q\n", i, tk, m.TokenPiece(tk, true))
		}
		return
	}
	fmt.Fprintf(w, "number of positions in the input = %d (%d BOS, %d context tokens, %d instruction rows, %d persona rows, %d prompt tokens)\n",
		l.Len(), l.ContextAt(), l.NContext, l.NInstr, l.NPersona, l.NPrompt)
	for _, s := range t.Slots() {
		if s.Token < 0 {
			fmt.Fprintf(w, "%6d -> [%s row %d]\n", s.Pos, s.Kind, s.Row)
			continue
		}
		fmt.Fprintf(w, "%6d -> %6d %q\n", s.Pos, s.Token, m.TokenPiece(s.Token, true))
	}
}
