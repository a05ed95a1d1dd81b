// Command pplug runs personalized local LLMs: generation, chat with a user
// profile, benchmarks, and the Persona-Plug plug-in's tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/llama"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process exit, for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
			cancel()
		}
	}()
	if err := app.RunContext(ctx, args); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "pplug: %v\n", err)
			return 2
		}
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "pplug: interrupted")
			return 130
		}
		fmt.Fprintf(stderr, "pplug: %v\n", err)
		return 1
	}
	return 0
}

// interruptHook, when set, gets the first say on Ctrl-C; it returns true
// when it handled the interrupt.
var interruptHook atomic.Pointer[func() bool]

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "pplug",
		Usage:                "personalized local LLMs (Persona-Plug on llama.cpp)",
		Version:              buildinfo.Version,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
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
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		// Errors are printed once, by run.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	return app
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
