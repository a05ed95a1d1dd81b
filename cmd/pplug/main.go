// Command pplug runs personalized local LLMs: generation, chat with a user
// profile, benchmarks, and the Persona-Plug plug-in's tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/llama"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func init() {
	// --version without urfave/cli's -v alias, which is --verbose here.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
}

// run is main without the process exit, for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		for sig := range sigc {
			// An interactive command may take Ctrl-C for itself (chat stops
			// the answer, not the program); otherwise it ends the run.
			if h := interruptHook.Load(); h != nil && sig == os.Interrupt && (*h)() {
				continue
			}
			cancel(signalError{sig.(syscall.Signal)})
		}
	}()
	return runContext(ctx, args, stdin, stdout, stderr)
}

// signalError is the cause of a run cancelled by a signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return e.sig.String() }

// runContext runs the CLI under ctx and returns the exit status: 0, 1 for
// a failure, 2 for a usage error, 128 + the signal's number when a signal
// stopped it (130 for Ctrl-C, 143 for SIGTERM), as shells report it.
func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return 0
	}
	var ce cmdUsageError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "pplug %s: %v\nRun 'pplug %s --help' for usage.\n", ce.cmd, ce.err, ce.cmd)
		return 2
	}
	var ue usageError
	// A grammar llama.cpp cannot use is a mistake in the command line,
	// also when it shows only at the sampler or while generating.
	if errors.As(err, &ue) || errors.Is(err, llama.ErrInvalidGrammar) {
		fmt.Fprintf(stderr, "pplug: %v\nRun 'pplug --help' for usage.\n", err)
		return 2
	}
	if errors.Is(err, context.Canceled) {
		var se signalError
		if errors.As(context.Cause(ctx), &se) && se.sig != syscall.SIGINT {
			fmt.Fprintf(stderr, "pplug: stopped by %v\n", se.sig)
			return 128 + int(se.sig)
		}
		fmt.Fprintln(stderr, "pplug: interrupted")
		return 130
	}
	fmt.Fprintf(stderr, "pplug: %v\n", err)
	return 1
}

// interruptHook, when set, gets the first say on Ctrl-C; it returns true
// when it handled the interrupt.
var interruptHook atomic.Pointer[func() bool]

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// cmdUsageError is a usage error of one command, named by its path
// ("generate", "plug init") so the message can point to its help.
type cmdUsageError struct {
	cmd string
	err error
}

func (e cmdUsageError) Error() string { return e.err.Error() }
func (e cmdUsageError) Unwrap() error { return e.err }

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "pplug",
		Usage:                "personalized local LLMs (Persona-Plug on llama.cpp)",
		Version:              buildinfo.Version,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log progress and llama.cpp messages to stderr"},
		},
		Before: func(c *cli.Context) error {
			setupLogging(c.Bool("verbose"), stderr)
			return nil
		},
		Commands: []*cli.Command{
			generateCommand(),
			infoCommand(),
			versionCommand(),
			chatCommand(),
			benchCommand(),
			trainCommand(),
			plugCommand(),
			profileCommand(),
			synthCommand(),
			evalCommand(),
			serveCommand(),
			embedCommand(),
			completionCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		// Errors are printed once, by run.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	defaultTexts(app.Flags)
	for _, cmd := range app.Commands {
		conventions(cmd, cmd.Name)
	}
	return app
}

// conventions makes cmd and its subcommands keep the CLI's rules: usage
// errors (bad flags, missing required flags, stray arguments) exit 2 with
// a one-line message naming the command; a command without ArgsUsage takes
// no positional arguments; no output flag names an input or another output
// (files.go); float defaults print short.
func conventions(cmd *cli.Command, path string) {
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return cmdUsageError{cmd: path, err: err}
	}
	defaultTexts(cmd.Flags)
	// urfave/cli prints the whole help for a missing required flag; the
	// action checks them instead.
	var required []string
	for _, f := range cmd.Flags {
		if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() && notRequired(f) {
			required = append(required, f.Names()[0])
		}
	}
	action := cmd.Action
	if action == nil && len(cmd.Subcommands) > 0 {
		action = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		}
	}
	takesArgs := cmd.ArgsUsage != ""
	hasSubs := len(cmd.Subcommands) > 0
	if action != nil {
		cmd.Action = func(c *cli.Context) error {
			if !takesArgs && !hasSubs && c.NArg() > 0 {
				return cmdUsageError{cmd: path, err: fmt.Errorf("unexpected argument %q: this command takes no arguments (quote text that holds spaces)", c.Args().First())}
			}
			if listsDevices(c, cmd.Flags) {
				listDevices(c.App.Writer)
				return nil
			}
			// Before anything else reads or writes a file.
			if err := checkFiles(c, path, cmd.Flags); err != nil {
				return cmdUsageError{cmd: path, err: err}
			}
			for _, name := range required {
				if !c.IsSet(name) {
					return cmdUsageError{cmd: path, err: fmt.Errorf("required flag --%s not set", name)}
				}
			}
			if err := checkIntRanges(c, cmd.Flags); err != nil {
				return cmdUsageError{cmd: path, err: err}
			}
			if err := checkEnums(c, cmd.Flags); err != nil {
				return cmdUsageError{cmd: path, err: err}
			}
			err := action(c)
			var ce cmdUsageError
			var ue usageError
			if err != nil && !errors.As(err, &ce) && errors.As(err, &ue) {
				return cmdUsageError{cmd: path, err: err}
			}
			return err
		}
	}
	for _, sub := range cmd.Subcommands {
		conventions(sub, path+" "+sub.Name)
	}
}

// intRanges are the values the integer flags that several commands share
// accept, wherever they appear, so that no command takes a negative count or
// a size that cannot be meant. Commands check their own flags further.
var intRanges = map[string]struct {
	min, max int
	what     string
}{
	"threads":            {0, ggmlMaxThreads, "0 (the default) up to 512 (ggml's limit)"},
	"threads-batch":      {0, ggmlMaxThreads, "0 (the default) up to 512 (ggml's limit)"},
	"ctx-size":           {0, maxCtxSize, fmt.Sprintf("0 (the default) up to %d", maxCtxSize)},
	"batch-size":         {1, math.MaxInt, "1 or more"},
	"ubatch-size":        {1, math.MaxInt, "1 or more"},
	"main-gpu":           {0, math.MaxInt, "0 or more (an index among the model's devices)"},
	"n-predict":          {-1, math.MaxInt, "-1 (no limit) or a number of tokens"},
	"max-items":          {1, math.MaxInt, "1 or more"},
	"encoder-max-tokens": {1, math.MaxInt, "1 or more"},
	"retrieve-k":         {1, math.MaxInt, "1 or more"},
	"explain-k":          {1, math.MaxInt, "1 or more"},
	"repeat-last-n":      {-1, math.MaxInt, "-1 (the context), 0 (off) or a number of tokens"},
	"limit":              {0, math.MaxInt, "0 (all) or a number"},
	"repetitions":        {1, 1_000_000, "1 up to 1000000"},
	"batch":              {1, 1 << 16, "1 up to 65536 examples per step"}, // train
}

// checkIntRanges checks the integer flags of intRanges that were given.
func checkIntRanges(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		if _, ok := f.(*cli.IntFlag); !ok {
			continue
		}
		name := f.Names()[0]
		r, ok := intRanges[name]
		if !ok || !c.IsSet(name) {
			continue
		}
		if v := c.Int(name); v < r.min || v > r.max {
			return fmt.Errorf("--%s %d: want %s", name, v, r.what)
		}
	}
	return nil
}

// notRequired clears the Required field of f and marks its usage text
// "(required)"; it returns false for a flag type it does not know.
func notRequired(f cli.Flag) bool {
	switch f := f.(type) {
	case *cli.StringFlag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	case *cli.IntFlag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	case *cli.Uint64Flag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	case *cli.Float64Flag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	case *cli.StringSliceFlag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	case *cli.GenericFlag:
		f.Required, f.Usage = false, f.Usage+" (required)"
	default:
		return false
	}
	return true
}

// defaultTexts makes float defaults print as written (0.8, not the float32
// value 0.800000011920929 seen as a float64).
func defaultTexts(flags []cli.Flag) {
	for _, f := range flags {
		ff, ok := f.(*cli.Float64Flag)
		if !ok || ff.DefaultText != "" {
			continue
		}
		ff.DefaultText = shortFloat(ff.Value)
	}
}

func shortFloat(v float64) string {
	if f32 := float32(v); float64(f32) == v {
		return strconv.FormatFloat(v, 'g', -1, 32)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// reorderArgs moves the flags that follow a command's positional arguments
// in front of them, so that `generate -m M "Once upon" -n 4` honours -n:
// urfave/cli v2 stops parsing flags at the first positional argument.
// Everything after "--" stays positional.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args // shell completion reads the words as typed
	}
	out := append([]string(nil), args[0])
	flags, cmds := app.Flags, app.Commands
	i := 1
	// Walk the command path: flags of each level, then the command name.
	for i < len(args) {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if isFlagArg(a) {
			n := flagArgs(flags, args[i:])
			out = append(out, args[i:i+n]...)
			i += n
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		flags, cmds = next.Flags, next.Subcommands
		i++
	}
	// The rest belongs to the last command: flags first, then positionals.
	var pos []string
	dashdash := false
	for i < len(args) {
		a := args[i]
		if a == "--" {
			dashdash = true
			pos = append(pos, args[i+1:]...)
			break
		}
		if isFlagArg(a) {
			n := flagArgs(flags, args[i:])
			out = append(out, args[i:i+n]...)
			i += n
			continue
		}
		pos = append(pos, a)
		i++
	}
	if dashdash || (len(pos) > 0 && isFlagArg(pos[0])) {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func isFlagArg(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagArgs is how many arguments the flag at args[0] takes: 2 when its
// value is the next argument, else 1.
func flagArgs(flags []cli.Flag, args []string) int {
	name := strings.TrimLeft(args[0], "-")
	if strings.Contains(name, "=") || len(args) < 2 {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, ok := f.(*cli.BoolFlag); ok {
				return 1
			}
			return 2
		}
	}
	return 1 // unknown: flag parsing reports it
}

// setupLogging installs the slog default for pplug and routes llama.cpp's
// log to it when verbose.
func setupLogging(verbose bool, stderr io.Writer) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	if verbose {
		llama.SetLogger(logger, slog.LevelInfo)
	} else {
		llama.SetLogger(nil, slog.LevelError)
	}
}

// shortID is an encoder id without its details (the part before "|").
func shortID(id string) string {
	if i := strings.Index(id, "|"); i > 0 {
		return id[:i]
	}
	return id
}
