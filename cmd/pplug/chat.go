package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chzyer/readline"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/pplug/pplug/chat"
	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

func chatCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "system", Usage: "system prompt"},
		&cli.StringFlag{Name: "chat-template", Usage: "chat template or built-in name (default: the model's; plain User:/Assistant: without one)"},
		&cli.IntFlag{Name: "n-predict", Aliases: []string{"n"}, Value: 512, Usage: "most tokens per answer (-1: until the model ends its turn)"},
		&cli.BoolFlag{Name: "remember", Usage: "append your messages to the profile (and its cache) so the persona follows the conversation"},
		&cli.BoolFlag{Name: "timings", Usage: "print the speed of each answer to stderr"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	flags = append(flags, samplingFlags()...)
	flags = append(flags, personaFlags()...)
	return &cli.Command{
		Name:  "chat",
		Usage: "chat with a model, personalised with a user profile",
		UsageText: "pplug chat -m MODEL [--profile HISTORY.json --plug PLUG.gguf [--encoder BGE.gguf]] [--system TEXT]\n\n" +
			"In a terminal: line editing and history; Ctrl-C stops an answer, Ctrl-D exits.\n" +
			"Otherwise one message per input line, one output line per input line (newlines in answers become spaces;\n" +
			"commands and blank lines get an empty line).\n" +
			"Commands: " + strings.Join(chatCommandNames, ", "),
		Flags:  flags,
		Action: runChat,
	}
}

var chatCommandNames = []string{"/help", "/reset", "/persona on|off", "/profile", "/save FILE", "/save! FILE", "/exit"}

const chatHelp = `/help            this help
/reset           forget the conversation
/persona on|off  answer with or without the persona rows (compare answers)
/profile         the history items weighted highest for your last message
/save FILE       write the transcript as JSON (a new file)
/save! FILE      the same, replacing FILE if it exists (or /save FILE --force)
/exit            leave (Ctrl-D too)
`

// chatPersona adapts the CLI's PPlug state to chat.Persona.
type chatPersona struct{ st *personaState }

func (p chatPersona) Rows(ctx context.Context, q string) ([]float32, []float32, error) {
	return p.st.rt.QueryRows(ctx, p.st.user, q)
}
func (p chatPersona) NRows() int { return p.st.rt.Plug.NRows() }

func runChat(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	ctx := c.Context
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	sopts, err := samplerOptions(c)
	if err != nil {
		return err
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	// Sequence 1 is scratch space for replacing the persona rows in place.
	copts.NSeqMax, copts.KVUnified = 2, true

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
	if c.Bool("remember") {
		if ps.prof == nil {
			return usagef("--remember needs --profile")
		}
		if ps.prof.Format != profile.FormatArray && ps.prof.Format != profile.FormatJSONL {
			return usagef("--remember needs a plain profile (a JSON array or JSON Lines of items), not a LaMP question file")
		}
	}
	applyThreadDefault(c, m, &copts)
	lctx, err := m.NewContext(copts)
	if err != nil {
		return err
	}
	defer lctx.Close()
	smp, err := llama.NewSampler(sopts)
	if err != nil {
		return err
	}
	defer smp.Close()

	o := chat.Options{System: c.String("system"), Template: c.String("chat-template"), MaxTokens: c.Int("n-predict")}
	switch ps.mode {
	case "pplug":
		o.Persona = chatPersona{ps}
	case "retrieval":
		o.Augment = func(msg string) string {
			return persona.RetrievalPrompt(ps.prof.Items, ps.retr.Top(msg, ps.k), msg)
		}
	}
	sess, err := chat.New(lctx, smp, o)
	if err != nil {
		return err
	}
	r := &chatREPL{c: c, sess: sess, ps: ps, m: m, stdout: stdout, stderr: stderr}
	for _, n := range sess.Notices() {
		r.notice(n)
	}
	return r.run(ctx)
}

type chatREPL struct {
	c      *cli.Context
	sess   *chat.Session
	ps     *personaState
	m      *llama.Model
	stdout io.Writer
	stderr io.Writer
	tty    bool

	mu     sync.Mutex
	cancel context.CancelFunc // of the answer being generated
}

func (r *chatREPL) notice(s string) { fmt.Fprintf(r.stderr, "[%s]\n", s) }

// interrupt stops the answer in progress; at the prompt it lets Ctrl-C end
// the program (line mode; in a terminal readline takes Ctrl-C itself).
func (r *chatREPL) interrupt() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
		return true
	}
	return false
}

func (r *chatREPL) run(ctx context.Context) error {
	hook := r.interrupt
	interruptHook.Store(&hook)
	defer interruptHook.Store(nil)

	in := r.c.App.Reader
	f, isFile := in.(*os.File)
	r.tty = isFile && term.IsTerminal(int(f.Fd())) && isTerminalWriter(r.stdout)
	var next func() (string, error)
	if r.tty {
		rl, err := readline.NewEx(&readline.Config{
			Prompt:          "> ",
			HistoryFile:     historyFile(),
			InterruptPrompt: "^C",
			EOFPrompt:       "",
			Stdin:           io.NopCloser(f),
			Stdout:          r.stdout,
			Stderr:          r.stderr,
		})
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer rl.Close()
		fmt.Fprintf(r.stderr, "chatting with %s%s. /help for commands, Ctrl-D to leave.\n", r.m.Info().Description, r.modeNote())
		next = func() (string, error) {
			for {
				line, err := rl.Readline()
				if errors.Is(err, readline.ErrInterrupt) {
					if line == "" {
						fmt.Fprintln(r.stderr, "(Ctrl-D or /exit leaves)")
					}
					continue
				}
				return line, err
			}
		}
	} else {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64*1024), 16<<20)
		next = func() (string, error) {
			if !sc.Scan() {
				if err := sc.Err(); err != nil {
					return "", err
				}
				return "", io.EOF
			}
			return sc.Text(), nil
		}
	}

	for {
		if ctx.Err() != nil {
			return nil
		}
		line, err := next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !utf8.ValidString(line) {
			r.notice("that message is not valid UTF-8; it was ignored")
			r.noAnswer()
			continue
		}
		line = strings.TrimSpace(line)
		if line == "" {
			r.noAnswer()
			continue
		}
		if strings.HasPrefix(line, "/") {
			quit, err := r.command(line)
			if err != nil {
				r.notice(err.Error())
			}
			r.noAnswer()
			if quit {
				return nil
			}
			continue
		}
		if err := r.answer(ctx, line); err != nil {
			return err
		}
	}
}

// noAnswer keeps line mode aligned: every input line gets one output line,
// an empty one for a line that gets no answer (a command, a blank or
// ignored line).
func (r *chatREPL) noAnswer() {
	if !r.tty {
		fmt.Fprintln(r.stdout)
	}
}

func (r *chatREPL) modeNote() string {
	switch r.ps.mode {
	case "pplug":
		return fmt.Sprintf(" with the persona of %s (%d items)", r.c.String("profile"), r.ps.user.Len())
	case "retrieval":
		return fmt.Sprintf(" with %d retrieved items of %s per message", r.ps.k, r.c.String("profile"))
	}
	return ""
}

func (r *chatREPL) answer(ctx context.Context, msg string) error {
	actx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.cancel = nil
		r.mu.Unlock()
		cancel()
	}()
	started := false
	res, err := r.sess.Send(actx, msg, func(s string) error {
		if !started {
			// Answers begin where the model starts its text, often with a space.
			if s = strings.TrimLeft(s, " \t\n"); s == "" {
				return nil
			}
			started = true
		}
		if !r.tty {
			// Line mode: one answer per output line.
			s = strings.ReplaceAll(s, "\n", " ")
		}
		_, err := io.WriteString(r.stdout, s)
		return err
	})
	fmt.Fprintln(r.stdout)
	for _, n := range r.sess.Notices() {
		r.notice(n)
	}
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() == nil:
		r.notice("stopped")
	case errors.Is(err, chat.ErrTooLong):
		r.notice(err.Error())
	case err != nil:
		return err
	}
	if r.c.Bool("timings") {
		printTimings(r.stderr, res.Stats)
	}
	if r.c.Bool("remember") {
		if err := r.remember(ctx, msg); err != nil {
			r.notice("could not remember the message: " + err.Error())
		}
	}
	return nil
}

// remember appends the user's message to the profile and refreshes the
// persona (only the new item is encoded; the rest comes from the cache).
func (r *chatREPL) remember(ctx context.Context, msg string) error {
	ps := r.ps
	now := time.Now().UTC()
	id := fmt.Sprintf("chat-%d", now.UnixNano())
	if err := profile.Append(r.c.String("profile"), ps.prof.Format, map[string]string{"id": id, "date": now.Format(time.RFC3339), "text": msg}); err != nil {
		return err
	}
	prof, _, err := loadProfile(r.c)
	if err != nil {
		return err
	}
	ps.prof = prof
	switch ps.mode {
	case "retrieval":
		ps.retr = persona.NewRetrieval(prof.Items)
	case "pplug":
		user, st, err := ps.rt.PrepareUser(ctx, prof, profileKey(r.c), nil)
		if err != nil {
			return err
		}
		old := ps.user
		ps.user = user
		ps.closers = append(ps.closers, closerFunc(user.Close))
		_ = old.Close()
		slog.Debug("remembered", "items", user.Len(), "encoded", st.Encoded, "cached", st.Cached)
	}
	return nil
}

func (r *chatREPL) command(line string) (quit bool, err error) {
	f := strings.Fields(line)
	switch f[0] {
	case "/exit", "/quit", "/bye":
		return true, nil
	case "/help", "/?":
		fmt.Fprint(r.stderr, chatHelp)
	case "/reset":
		if err := r.sess.Reset(); err != nil {
			return false, err
		}
		r.notice("conversation cleared")
	case "/persona":
		if len(f) != 2 || (f[1] != "on" && f[1] != "off") {
			return false, errors.New("usage: /persona on|off")
		}
		if r.ps.mode != "pplug" {
			return false, errors.New("no persona rows: start the chat with --profile and --plug")
		}
		if err := r.sess.SetPersona(f[1] == "on"); err != nil {
			return false, err
		}
		r.notice("persona " + f[1])
	case "/profile":
		return false, r.showProfile()
	case "/save", "/save!":
		path, force := strings.TrimSpace(strings.TrimPrefix(line, f[0])), f[0] == "/save!"
		if p, ok := strings.CutSuffix(path, " --force"); ok {
			path, force = strings.TrimSpace(p), true
		} else if p, ok := strings.CutPrefix(path, "--force "); ok {
			path, force = strings.TrimSpace(p), true
		}
		if path == "" || path == "--force" {
			return false, errors.New("usage: /save FILE, or /save! FILE to replace an existing file")
		}
		if err := r.save(path, force); err != nil {
			return false, err
		}
		r.notice("saved " + path)
	default:
		return false, fmt.Errorf("unknown command %s (/help lists them)", f[0])
	}
	return false, nil
}

func (r *chatREPL) showProfile() error {
	last := r.sess.LastUserMessage()
	switch r.ps.mode {
	case "pplug":
		w := r.sess.Weights()
		if w == nil {
			return errors.New("no weights yet: send a message (with the persona on) first")
		}
		r.ps.explain(r.stderr, w, 5)
	case "retrieval":
		if last == "" {
			return errors.New("send a message first")
		}
		fmt.Fprintf(r.stderr, "retrieved for your last message:\n")
		for _, i := range r.ps.retr.Top(last, r.ps.k) {
			fmt.Fprintf(r.stderr, "  #%d  %s\n", i, truncateUTF8(strings.Join(strings.Fields(r.ps.prof.Items[i].Text), " "), 100))
		}
	default:
		return errors.New("no profile: start the chat with --profile")
	}
	return nil
}

// openFiles are the files the session reads: /save never replaces them.
func (r *chatREPL) openFiles() map[string]string {
	files := map[string]string{}
	for _, flag := range []string{"profile", "plug", "model", "encoder"} {
		if p := r.c.String(flag); p != "" {
			files[flag] = p
		}
	}
	return files
}

// checkSave refuses to write the transcript over a file the session uses
// (compared by identity, so another name for it is caught too), over a
// folder, or over any existing file unless force.
func (r *chatREPL) checkSave(path string, force bool) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, lerr := os.Lstat(path); lerr == nil {
			// A dangling symbolic link: writing would replace the link.
			if !force {
				return fmt.Errorf("%s exists (a symbolic link); /save! %s replaces it", path, path)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("save: %s is a folder; give a file name", path)
	}
	for flag, p := range r.openFiles() {
		if ost, err := os.Stat(p); err == nil && os.SameFile(st, ost) {
			return fmt.Errorf("save: %s is the --%s file of this chat (%s); choose another name", path, flag, p)
		}
	}
	if !force {
		return fmt.Errorf("save: %s exists; /save! %s (or /save %s --force) replaces it", path, path, path)
	}
	return nil
}

func (r *chatREPL) save(path string, force bool) error {
	if err := r.checkSave(path, force); err != nil {
		return err
	}
	t := struct {
		Model    string              `json:"model"`
		Profile  string              `json:"profile,omitempty"`
		Plug     string              `json:"plug,omitempty"`
		Mode     string              `json:"personalisation,omitempty"`
		Persona  bool                `json:"persona_on"`
		System   string              `json:"system,omitempty"`
		Saved    string              `json:"saved"`
		Messages []llama.ChatMessage `json:"messages"`
	}{
		Model: r.c.String("model"), Profile: r.c.String("profile"), Plug: r.c.String("plug"), Mode: r.ps.mode,
		Persona: r.sess.PersonaOn(), System: r.c.String("system"), Saved: time.Now().UTC().Format(time.RFC3339),
		Messages: r.sess.Messages(),
	}
	if t.Messages == nil {
		t.Messages = []llama.ChatMessage{}
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	})
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func historyFile() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	if err := os.MkdirAll(d+"/pplug", 0o755); err != nil {
		return ""
	}
	return d + "/pplug/chat_history"
}
