package main

import (
	"bufio"
	"context"
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
			"Commands: " + strings.Join(chatCommandNames, ", ") + "\n\n" + chatFallbackHelp,
		Flags:  flags,
		Action: runChat,
	}
}

// chatFallbackHelp says what chat does for a model without a chat template
// (chat.Session's plain format).
const chatFallbackHelp = "Template: the model's chat template, or --chat-template (a template or a llama.cpp built-in name).\n" +
	"A model without one that llama.cpp can apply gets a plain format: the system prompt and a blank line,\n" +
	"then \"User: MESSAGE\" and \"Assistant: ANSWER\" lines; the answer ends where the model writes \"\\nUser:\"."

var chatCommandNames = []string{"/help", "/reset", "/persona [on|off]", "/profile", "/set [NAME VALUE]", "/show", "/save FILE", "/save! FILE", "/load FILE", "/exit"}

const chatHelp = `/help             this help
/reset            forget the conversation
/persona          the persona's state; /persona on|off answers with or without it (compare answers)
/profile          what personalised your last message: the history items weighted highest, the items retrieved
/set NAME VALUE   change a setting (temp, top-k, top-p, min-p, repeat-penalty, repeat-last-n,
                  frequency-penalty, presence-penalty, seed, n-predict, system); /set alone lists them
/show             the model, plug, profile and settings of this chat
/save FILE        write the transcript as JSON (a new file; each message records its persona state)
/save! FILE       the same, replacing FILE if it exists (or /save FILE --force)
/load FILE        continue a saved transcript
/exit             leave (Ctrl-D too)
Messages of several lines: end a line with \ to go on, or put them between """ and """.
`

// chatPersona hands the chat the user's current persona (--remember
// replaces it as the profile grows).
type chatPersona struct{ st *personaState }

func (p chatPersona) Personalize(ctx context.Context, msg string) (persona.Request, error) {
	return p.st.user.Personalize(ctx, msg)
}
func (p chatPersona) NRows() int { return p.st.pz.NRows() }

func runChat(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	o, err := chatOptionsFrom(c)
	if err != nil {
		return err
	}
	return o.run(c.Context, c.App.Reader, c.App.Writer, c.App.ErrWriter)
}

// chatOptions are chat's flags, read and checked once.
type chatOptions struct {
	Sampler llama.SamplerOptions
	Stops   []string
	Context llama.ContextOptions
	// ThreadsSet: -t was given (else threadDefault picks).
	ThreadsSet bool
	Persona    personaOptions
	Model      modelConfig
	// Files are the chat's input files by flag: /save never replaces them.
	Files    map[string]string
	System   string
	Template string // --chat-template
	NPredict int
	Timings  bool
	Remember bool
}

func chatOptionsFrom(c *cli.Context) (*chatOptions, error) {
	o := &chatOptions{ThreadsSet: c.IsSet("threads"), Files: chatInputFiles(c), System: c.String("system"),
		Template: c.String("chat-template"), NPredict: c.Int("n-predict"), Timings: c.Bool("timings"), Remember: c.Bool("remember")}
	var err error
	if o.Sampler, err = samplerOptions(c); err != nil {
		return nil, err
	}
	if o.Stops, err = stopStrings(c); err != nil {
		return nil, err
	}
	if o.Context, err = contextOptions(c); err != nil {
		return nil, err
	}
	// Sequence 1 is scratch space for replacing the persona rows in place.
	o.Context.NSeqMax, o.Context.KVUnified = 2, true
	if o.Persona, err = personaOptionsFrom(c); err != nil {
		return nil, err
	}
	if _, err := o.Persona.method(); err != nil {
		return nil, err
	}
	if o.Remember && o.Persona.Profile.Path == "" {
		return nil, usagef("--remember needs --profile")
	}
	if o.Model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	return o, nil
}

// run opens the model, the persona and the session, and runs the REPL.
func (o *chatOptions) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	m, err := o.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	ps, err := o.openPersona(ctx, m, stderr)
	if err != nil {
		return err
	}
	defer ps.Close()
	copts := o.Context
	threadDefault(o.ThreadsSet, m, &copts)
	lctx, err := m.NewContext(copts)
	if err != nil {
		return err
	}
	defer lctx.Close()
	smp, err := m.NewSampler(o.Sampler)
	if err != nil {
		return err
	}
	co := chat.Options{System: o.System, Template: o.Template, MaxTokens: o.NPredict, Stop: o.Stops}
	if ps.user != nil {
		co.Persona = chatPersona{ps}
	}
	sess, err := chat.New(lctx, smp, co)
	if err != nil {
		smp.Close()
		return err
	}
	defer sess.Close()
	r := &chatREPL{po: o.Persona, model: o.Model.Path, files: o.Files, stdin: stdin,
		timings: o.Timings, remembers: o.Remember, sess: sess, ps: ps, m: m, lctx: lctx, smp: smp, stdout: stdout, stderr: stderr,
		set: chatSettings{Sampler: o.Sampler, NPredict: o.NPredict, System: o.System}}
	defer func() { r.smp.Close() }()
	return r.runToEnd(ctx)
}

// openPersona sets up the persona and checks what --remember needs of
// the profile.
func (o *chatOptions) openPersona(ctx context.Context, m *llama.Model, stderr io.Writer) (*personaState, error) {
	ps, err := setupPersona(ctx, o.Persona, m, stderr)
	if err != nil {
		return nil, err
	}
	if plug := ps.pz.Plug; plug != nil && !plug.Chat() {
		slog.Info("the plug was trained on the prompt layout; chat lays each turn out as a conversation (pplug train --layout chat trains for it)")
	}
	if !o.Remember {
		return ps, nil
	}
	switch {
	case ps.prof == nil:
		err = usagef("--remember needs --profile")
	case ps.prof.Format != profile.FormatArray && ps.prof.Format != profile.FormatJSONL:
		err = usagef("--remember needs a plain profile (a JSON array or JSON Lines of items), not a LaMP question file")
	}
	if err != nil {
		ps.Close()
		return nil, err
	}
	return ps, nil
}

// runToEnd prints the session's notices, runs the REPL and reports
// messages --remember could not save.
func (r *chatREPL) runToEnd(ctx context.Context) error {
	for _, n := range r.sess.Notices() {
		r.notice(n)
	}
	err := r.run(ctx)
	if lost := r.unsaved(); lost != nil {
		if err == nil {
			return lost // the final line, and exit status 1
		}
		fmt.Fprintf(r.stderr, "pplug: %v\n", lost)
	}
	return err
}

type chatREPL struct {
	po        personaOptions
	model     string            // -m
	files     map[string]string // the chat's input files by flag: /save never replaces them
	stdin     io.Reader
	timings   bool // --timings
	remembers bool // --remember
	sess      *chat.Session
	ps        *personaState
	m         *llama.Model
	lctx      *llama.Context
	smp       *llama.Sampler // the session's sampler, replaced by /set
	set       chatSettings
	stdout    io.Writer
	stderr    io.Writer
	tty       bool

	mu     sync.Mutex
	cancel context.CancelFunc // of the answer being generated

	remembered, lost int   // --remember: messages saved to the profile, and not
	lostWhy          error // the first reason a message was not saved
}

// unsaved is the error of a --remember session that could not save some
// of its messages, nil when every one reached the profile.
func (r *chatREPL) unsaved() error {
	if r.lost == 0 {
		return nil
	}
	return fmt.Errorf("--remember: %d of %d messages were not saved to %s (%v)",
		r.lost, r.lost+r.remembered, r.po.Profile.Path, r.lostWhy)
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

// maxLine bounds one input line in line mode; a longer line is skipped
// (with its one output line) rather than ending the chat.
const maxLine = 16 << 20

// errLineTooLong marks a skipped over-long input line.
var errLineTooLong = fmt.Errorf("the line is longer than %d MiB; it was ignored", maxLine>>20)

// lineReader reads lines of any length, keeping at most maxLine bytes.
func lineReader(in io.Reader) func() (string, error) {
	br := bufio.NewReaderSize(in, 64<<10)
	return func() (string, error) {
		var b []byte
		long := false
		for {
			chunk, err := br.ReadSlice('\n')
			if len(b)+len(chunk) > maxLine {
				long, b = true, b[:0]
			} else if !long {
				b = append(b, chunk...)
			}
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				continue
			case err == io.EOF && (len(b) > 0 || long):
			case err != nil:
				return "", err
			}
			if long {
				return "", errLineTooLong
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}
}

func (r *chatREPL) run(ctx context.Context) error {
	hook := r.interrupt
	interruptHook.Store(&hook)
	defer interruptHook.Store(nil)

	var ml multiline
	next, closeInput, err := r.input(&ml)
	if err != nil {
		return err
	}
	defer closeInput()
	next = untilDone(ctx, next)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, err := next()
		if errors.Is(err, io.EOF) {
			if msg, ok := ml.Flush(); ok && strings.TrimSpace(msg) != "" {
				return r.answer(ctx, msg)
			}
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			r.notice(err.Error())
			r.noAnswer()
			continue
		}
		if err != nil {
			return err
		}
		if quit, err := r.line(ctx, &ml, line); quit || err != nil {
			return err
		}
	}
}

// untilDone makes a blocking line source give up when ctx is done: the
// read goes on in a goroutine (one at a time, so no line is read before it
// is asked for) and a signal while the chat waits for input ends the wait
// with ctx's error.
func untilDone(ctx context.Context, next func() (string, error)) func() (string, error) {
	type result struct {
		line string
		err  error
	}
	var pending chan result
	return func() (string, error) {
		if pending == nil {
			pending = make(chan result, 1)
			go func(ch chan<- result) {
				line, err := next()
				ch <- result{line, err}
			}(pending)
		}
		select {
		case r := <-pending:
			pending = nil
			return r.line, r.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// input returns the line source: readline in a terminal (the banner, the
// "... " prompt inside a message of several lines, Ctrl-C dropping a
// half-typed one), lines of any length otherwise.
func (r *chatREPL) input(ml *multiline) (next func() (string, error), closeInput func(), err error) {
	in := r.stdin
	f, isFile := in.(*os.File)
	r.tty = isFile && term.IsTerminal(int(f.Fd())) && isTerminalWriter(r.stdout)
	if !r.tty {
		return lineReader(in), func() {}, nil
	}
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
		return nil, nil, fmt.Errorf("terminal: %w", err)
	}
	fmt.Fprintf(r.stderr, "chatting with %s%s. /help for commands, Ctrl-D to leave.\n", r.modelName(), r.modeNote())
	next = func() (string, error) {
		if ml.Pending() {
			rl.SetPrompt("... ")
		} else {
			rl.SetPrompt("> ")
		}
		for {
			line, err := rl.Readline()
			if errors.Is(err, readline.ErrInterrupt) {
				if line == "" && !ml.Pending() {
					fmt.Fprintln(r.stderr, "(Ctrl-D or /exit leaves)")
				}
				*ml = multiline{} // Ctrl-C drops a half-typed message
				continue
			}
			return line, err
		}
	}
	return next, func() { rl.Close() }, nil
}

// line handles one input line: part of a message, a whole message, or a
// command (a single line starting with /).
func (r *chatREPL) line(ctx context.Context, ml *multiline, line string) (quit bool, err error) {
	if !utf8.ValidString(line) {
		r.notice("that line is not valid UTF-8; it was ignored")
		r.noAnswer()
		return false, nil
	}
	single := !ml.Pending()
	msg, done := ml.Feed(line)
	if !done {
		r.noAnswer() // line mode: a continued line gets an empty line
		return false, nil
	}
	single = single && msg == line
	if msg = strings.TrimSpace(msg); msg == "" {
		r.noAnswer()
		return false, nil
	}
	if single && strings.HasPrefix(msg, "/") {
		quit, err := r.command(msg)
		if err != nil {
			r.notice(err.Error())
		}
		r.noAnswer()
		return quit, nil
	}
	return false, r.answer(ctx, msg)
}

// noAnswer keeps line mode aligned: every input line gets one output line,
// an empty one for a line that gets no answer (a command, a blank, ignored
// or continued line).
func (r *chatREPL) noAnswer() {
	if !r.tty {
		fmt.Fprintln(r.stdout)
	}
}

// modelName is the model as the banner and /show name it: its
// general.name, else its description.
func (r *chatREPL) modelName() string {
	info := r.m.Info()
	if info.Name != "" {
		return info.Name
	}
	return info.Description
}

func (r *chatREPL) modeNote() string {
	if r.ps.user == nil {
		return ""
	}
	switch m := r.ps.pz.Method; {
	case m.NeedsPlug() && m.Retrieves():
		return fmt.Sprintf(" with the persona of %s (%d items) and %d retrieved items per message", r.po.Profile.Path, r.ps.user.Len(), r.ps.pz.RetrieveK())
	case m.NeedsPlug():
		return fmt.Sprintf(" with the persona of %s (%d items)", r.po.Profile.Path, r.ps.user.Len())
	case m.Retrieves():
		return fmt.Sprintf(" with %d retrieved items of %s per message (%s)", r.ps.pz.RetrieveK(), r.po.Profile.Path, m)
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
	case errors.Is(err, llama.ErrGrammarDeadEnd):
		// The answer ends where the chat's grammar can go no further.
		r.notice("the answer stopped: " + err.Error())
	case err != nil:
		return err
	}
	if r.timings {
		printTimings(r.stderr, res.Stats)
	}
	if r.remembers {
		r.remember(ctx, msg)
	}
	return nil
}

// remember appends the user's message to the profile and refreshes the
// persona (only the new item is encoded; the rest comes from the cache).
// A message that could not be saved is counted (see unsaved); the chat
// goes on either way.
func (r *chatREPL) remember(ctx context.Context, msg string) {
	now := time.Now().UTC()
	id := fmt.Sprintf("chat-%d", now.UnixNano())
	if err := profile.Append(r.po.Profile.Path, r.ps.prof.Format, map[string]string{"id": id, "date": now.Format(time.RFC3339), "text": msg}); err != nil {
		r.notice("could not remember the message: " + err.Error())
		if r.lost++; r.lostWhy == nil {
			r.lostWhy = err
		}
		return
	}
	r.remembered++
	if err := r.refreshPersona(ctx); err != nil {
		r.notice("the message was saved, but the persona could not follow it: " + err.Error())
	}
}

// refreshPersona loads the grown profile and prepares the persona again.
func (r *chatREPL) refreshPersona(ctx context.Context) error {
	ps := r.ps
	prof, _, err := r.po.Profile.load(ctx)
	if err != nil {
		return err
	}
	ps.prof = prof
	return ps.prepare(ctx, io.Discard)
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
		return false, r.personaCommand(f[1:])
	case "/profile":
		return false, r.showProfile()
	case "/set":
		return false, r.setCommand(f[1:], strings.TrimSpace(strings.TrimPrefix(line, f[0])))
	case "/show":
		r.show()
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
	case "/load":
		path := strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		if path == "" {
			return false, errors.New("usage: /load FILE (a transcript written by /save)")
		}
		return false, r.load(path)
	default:
		return false, fmt.Errorf("unknown command %s (/help lists them)", f[0])
	}
	return false, nil
}

// personaCommand is /persona: alone it shows the state, on|off switches.
func (r *chatREPL) personaCommand(args []string) error {
	if len(args) == 0 {
		r.notice(r.personaState())
		return nil
	}
	if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
		return errors.New("usage: /persona (shows the state), /persona on|off")
	}
	if r.ps.user == nil {
		return errors.New("no persona: start the chat with --profile (and --plug for persona rows)")
	}
	if err := r.sess.SetPersona(args[0] == "on"); err != nil {
		return err
	}
	r.notice("persona " + args[0])
	return nil
}

// personaState describes the persona for /persona and /show.
func (r *chatREPL) personaState() string {
	if r.ps.user == nil {
		return "persona: none (start the chat with --profile, and --plug for persona rows)"
	}
	state := "off"
	if r.sess.PersonaOn() {
		state = "on"
	}
	s := fmt.Sprintf("persona: %s, method %s, %d history items of %s", state, r.ps.pz.Method, r.ps.user.Len(), r.po.Profile.Path)
	if r.ps.pz.Method.NeedsPlug() {
		s += fmt.Sprintf(", plug %s (%d rows), encoder %s", r.po.Plug, r.ps.pz.NRows(), shortID(r.ps.pz.Encoder.ID()))
	}
	if k := r.ps.pz.RetrieveK(); k > 0 {
		s += fmt.Sprintf(", %d retrieved items per message", k)
	}
	return s
}

// setCommand is /set: alone it lists the settings.
func (r *chatREPL) setCommand(args []string, rest string) error {
	if len(args) == 0 {
		r.notice(r.set.describe())
		return nil
	}
	next := r.set
	msg, err := next.apply(args)
	if err != nil {
		return err
	}
	if name := setNames[strings.ToLower(args[0])]; name == "system" || (args[0] == "parameter" && len(args) > 1 && setNames[strings.ToLower(args[1])] == "system") {
		// The system prompt keeps its spacing.
		_, after, _ := strings.Cut(rest, " ")
		if args[0] == "parameter" {
			_, after, _ = strings.Cut(strings.TrimSpace(after), " ")
		}
		next.System = strings.TrimSpace(after)
	}
	if next.Sampler != r.set.Sampler {
		smp, err := r.m.NewSampler(next.Sampler)
		if err != nil {
			return fmt.Errorf("/set: %w", err)
		}
		r.sess.SetSampler(smp)
		r.smp.Close()
		r.smp = smp
	}
	r.sess.SetMaxTokens(next.NPredict)
	if err := r.sess.SetSystem(next.System); err != nil {
		return err
	}
	r.set = next
	r.notice(msg)
	return nil
}

// show is /show: the model, the persona and the settings.
func (r *chatREPL) show() {
	info := r.m.Info()
	tmpl := r.sess.Template()
	switch {
	case tmpl == "":
		tmpl = "plain User:/Assistant: (the model has none llama.cpp can apply)"
	case tmpl == info.ChatTemplate:
		tmpl = "the model's own"
	}
	used := r.sess.Layout().Len()
	facts := []string{info.Architecture, humanCount(float64(info.Params)) + " parameters"}
	if info.FileType != "" {
		facts = append(facts, info.FileType)
	}
	fmt.Fprintf(r.stderr, "model:    %s (%s) %s\n", r.modelName(), strings.Join(facts, ", "), r.model)
	fmt.Fprintf(r.stderr, "context:  %d positions, %d in use; %d threads\n", r.lctx.NCtxSeq(), used, r.lctx.Threads())
	fmt.Fprintf(r.stderr, "template: %s\n", tmpl)
	fmt.Fprintf(r.stderr, "%s\n", r.personaState())
	fmt.Fprintf(r.stderr, "settings: %s\n", r.set.describe())
	if sys := r.sess.System(); sys != "" {
		fmt.Fprintf(r.stderr, "system:   %q\n", sys)
	}
	fmt.Fprintf(r.stderr, "messages: %d in the transcript\n", len(r.sess.Messages()))
}

func (r *chatREPL) showProfile() error {
	if r.ps.user == nil {
		return errors.New("no profile: start the chat with --profile")
	}
	if r.sess.LastUserMessage() == "" {
		return errors.New("send a message first")
	}
	req := r.sess.LastRequest()
	if req.Method == persona.MethodNone {
		return errors.New("the persona was off for your last message (/persona on)")
	}
	r.ps.explain(r.stderr, req, 5)
	return nil
}

// chatInputFiles are the files a chat reads, by flag: /save never
// replaces them.
func chatInputFiles(c *cli.Context) map[string]string {
	files := map[string]string{}
	for _, flag := range []string{"profile", "plug", "model", "encoder", "grammar-file"} {
		if p := c.String(flag); p != "" {
			files[flag] = p
		}
	}
	if js := c.String("json-schema"); strings.HasPrefix(js, "@") {
		files["json-schema"] = js[1:]
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
	for flag, p := range r.files {
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
	t := r.sess.Transcript()
	t.Model, t.ModelName, t.Profile, t.Plug = r.model, r.modelName(), r.po.Profile.Path, r.po.Plug
	t.Method, t.Settings = r.ps.pz.Method, r.set.describe()
	err := chat.WriteTranscript(path, t, force)
	if errors.Is(err, chat.ErrTranscriptExists) {
		return fmt.Errorf("save: %s exists; /save! %s (or /save %s --force) replaces it", path, path, path)
	}
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// load is /load: the conversation of a transcript continues here.
func (r *chatREPL) load(path string) error {
	t, err := chat.ReadTranscript(path)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := r.sess.Restore(t); err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	r.set.System = t.System
	if t.ModelName != "" && t.ModelName != r.modelName() {
		r.notice(fmt.Sprintf("the transcript was written with %s, this chat runs %s", t.ModelName, r.modelName()))
	}
	if t.Method != "" && r.ps.user != nil && t.Method != r.ps.pz.Method {
		r.notice(fmt.Sprintf("the transcript was personalised with %s, this chat uses %s", t.Method, r.ps.pz.Method))
	}
	state := "off"
	if r.sess.PersonaOn() {
		state = "on"
	}
	r.notice(fmt.Sprintf("loaded %d messages from %s; persona %s", len(t.Messages), path, state))
	return nil
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
	if err := os.MkdirAll(d+"/pplug", 0o777); err != nil {
		return ""
	}
	return d + "/pplug/chat_history"
}
