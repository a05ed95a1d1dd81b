package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

func setup(t *testing.T, nctx int) (*llama.Model, *llama.Context, *llama.Sampler) {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), testenv.Stories260K(t), llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c, err := m.NewContext(llama.ContextOptions{NCtx: nctx, Threads: 1, NSeqMax: 2, KVUnified: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, c, s
}

func send(t *testing.T, s *Session, msg string) llama.Result {
	t.Helper()
	r, err := s.Send(context.Background(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wordsPersona injects the token embeddings of fixed words as the rows: a
// persona whose effect on the answer is certain.
type wordsPersona struct {
	m     *llama.Model
	words string
	calls int
}

func (p *wordsPersona) Personalize(_ context.Context, msg string) (persona.Request, error) {
	p.calls++
	toks, err := p.m.Tokenize(p.words, false, false)
	if err != nil {
		return persona.Request{}, err
	}
	rows, err := p.m.TokenEmbeddings(toks[:2])
	return persona.Request{Method: persona.MethodPPlug, Prompt: msg, Rows: rows, Weights: []float32{1}}, err
}
func (p *wordsPersona) NRows() int { return 2 }

// TestLayoutMatchesGenerate: a chat's first answer with persona rows is
// the greedy generation of persona.Inputs for the same rendered prompt and
// rows, and the session reports the same layout: chat and generate put
// BOS, rows and prompt at the same positions.
func TestLayoutMatchesGenerate(t *testing.T) {
	m, c, smp := setup(t, 512)
	p := &wordsPersona{m: m, words: " Tom robot"}
	s, err := New(c, smp, Options{MaxTokens: 16, Persona: p})
	if err != nil {
		t.Fatal(err)
	}
	got := send(t, s, "Once upon a time")
	full, err := s.tmpl.Render(s.o.System, []llama.ChatMessage{{Role: "user", Content: "Once upon a time"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(full, true, true)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := p.Personalize(context.Background(), "")
	want, body := persona.NewLayout(m, 0, p.NRows(), toks, 0)
	if l := s.Layout(); l.RowsAt() != want.RowsAt() || l.PromptAt() != want.PromptAt() || !l.BOS || l.NPrompt < len(body) {
		t.Fatalf("chat layout %+v, generate's %+v", l, want)
	}
	c2, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	smp.Reset()
	gen, err := c2.Generate(context.Background(), smp, persona.Inputs(m, req.Rows, toks), 0, llama.GenerateOptions{MaxTokens: 16, Stop: s.stops})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tokens, gen.Tokens) {
		t.Fatalf("chat answered %q, generate %q for the same layout", got.Text, gen.Text)
	}
}

func TestConversationStaysInTheCache(t *testing.T) {
	_, c, smp := setup(t, 512)
	s, err := New(c, smp, Options{MaxTokens: 24})
	if err != nil {
		t.Fatal(err)
	}
	if s.Template() != "" || len(s.Notices()) != 0 {
		t.Fatal("stories260K has no template: the plain format should be used silently")
	}
	first := send(t, s, "Tom had a big red ball.")
	second := send(t, s, "What did Tom do with it?")
	if second.Stats.PromptRows >= int(second.Next)-second.Stats.GenTokens-1 {
		t.Fatalf("turn 2 decoded %d prompt rows, the whole conversation is %d: not incremental", second.Stats.PromptRows, second.Next)
	}
	if n := len(s.Messages()); n != 4 {
		t.Fatalf("%d messages in the transcript, want 4", n)
	}
	// The same question in a fresh conversation gets another answer: the
	// first turn conditions the second.
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	if len(s.Messages()) != 0 {
		t.Fatal("Reset kept messages")
	}
	fresh := send(t, s, "What did Tom do with it?")
	t.Logf("turn 1: %q\nturn 2: %q\nfresh:  %q", first.Text, second.Text, fresh.Text)
	if fresh.Text == second.Text {
		t.Fatal("the second answer did not depend on the first turn")
	}
	// And after Reset it is exactly what a new session says.
	s2, _ := New(c, smp, Options{MaxTokens: 24})
	s2.Reset()
	again := send(t, s2, "What did Tom do with it?")
	if again.Text != fresh.Text {
		t.Fatalf("after Reset: %q, in a new session: %q", fresh.Text, again.Text)
	}
}

func TestPersonaOnOff(t *testing.T) {
	m, c, smp := setup(t, 512)
	p := &wordsPersona{m: m, words: " Tom robot"}
	s, err := New(c, smp, Options{MaxTokens: 24, Persona: p})
	if err != nil {
		t.Fatal(err)
	}
	with := send(t, s, "Once upon a time")
	send(t, s, "And then?")
	if p.calls != 2 {
		t.Fatalf("rows computed %d times for 2 messages, want once per message", p.calls)
	}
	if err := s.SetPersona(false); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	without := send(t, s, "Once upon a time")
	t.Logf("with persona: %q\nwithout:      %q", with.Text, without.Text)
	if with.Text == without.Text {
		t.Fatal("/persona off did not change the answer")
	}
	if err := s.SetPersona(true); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if again := send(t, s, "Once upon a time"); again.Text != with.Text {
		t.Fatalf("persona on again: %q, first time %q", again.Text, with.Text)
	}
	// Without a persona, turning it on is refused.
	plain, _ := New(c, smp, Options{})
	if err := plain.SetPersona(true); err == nil {
		t.Fatal("persona turned on without one")
	}
}

func TestFullWindowDropsOldTurns(t *testing.T) {
	_, c, smp := setup(t, 256) // llama.cpp's smallest window
	s, err := New(c, smp, Options{MaxTokens: 40})
	if err != nil {
		t.Fatal(err)
	}
	dropped := false
	for i := range 12 {
		r, err := s.Send(context.Background(), "Tell me more about the little dog and the big red ball in the park.", nil)
		if err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		if int(r.Next) > c.NCtxSeq() {
			t.Fatalf("turn %d: position %d past the window", i, r.Next)
		}
		for _, n := range s.Notices() {
			if strings.Contains(n, "dropped") {
				dropped = true
			}
		}
	}
	if !dropped {
		t.Fatal("12 turns in a 256-position window never dropped a turn")
	}
	// A single message longer than the window is an error, not a crash.
	_, err = s.Send(context.Background(), strings.Repeat("a dog and a cat ", 200), nil)
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("over-long message: %v", err)
	}
	// The session still works afterwards.
	send(t, s, "Hello")
}

func TestChatTemplateModel(t *testing.T) {
	// A random-weight phi3-vocabulary llama with the Phi-3 chat template is
	// written by the CLI tests; here the template path is checked with the
	// built-in chatml template on stories260K.
	_, c, smp := setup(t, 512)
	s, err := New(c, smp, Options{Template: "chatml", MaxTokens: 8, System: "You are brief."})
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, "Hi")
	r := send(t, s, "Again")
	if r.Stats.PromptRows == 0 {
		t.Fatal("nothing decoded for the second turn")
	}
	if _, err := New(c, smp, Options{Template: "no such {{ template"}); err == nil {
		t.Fatal("an unknown template was accepted")
	}
	if _, err := s.Send(context.Background(), "   ", nil); !errors.Is(err, ErrEmptyMessage) {
		t.Fatalf("empty message: %v", err)
	}
}

func TestCancelStopsTheAnswer(t *testing.T) {
	_, c, smp := setup(t, 512)
	s, _ := New(c, smp, Options{MaxTokens: -1})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := s.Send(ctx, "Once upon a time", func(string) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(s.Messages()) != 2 {
		t.Fatalf("the stopped answer should stay in the transcript: %v", s.Messages())
	}
	send(t, s, "And then?")
}

// TestFullWindowWithPersona fills a 256-position window with persona rows
// in front: answers that run to the end of the window (-1 tokens) and
// short ones that pile up; old turns must be dropped, never a failure.
func TestFullWindowWithPersona(t *testing.T) {
	m, c, smp := setup(t, 256)
	for _, maxTokens := range []int{-1, 30, 1} {
		p := &wordsPersona{m: m, words: " Tom robot"}
		s, err := New(c, smp, Options{MaxTokens: maxTokens, Persona: p})
		if err != nil {
			t.Fatal(err)
		}
		dropped := false
		turns := 12
		if maxTokens < 0 {
			turns = 4 // each answer fills the window
		}
		for i := range turns {
			r, err := s.Send(context.Background(), "Tell me more about the little dog and the big red ball in the park.", nil)
			if err != nil {
				t.Fatalf("max tokens %d, turn %d: %v", maxTokens, i, err)
			}
			if int(r.Next) > c.NCtxSeq() {
				t.Fatalf("turn %d: position %d past the window", i, r.Next)
			}
			for _, n := range s.Notices() {
				dropped = dropped || strings.Contains(n, "dropped")
			}
		}
		if !dropped || p.calls != turns {
			t.Fatalf("max tokens %d: dropped %v, rows computed %d times for %d messages", maxTokens, dropped, p.calls, turns)
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
	}
}

// transcript is n messages, user and assistant in turn, of varied length.
func transcript(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		words := strings.Repeat(" and the ball", i%7)
		if i%2 == 0 {
			msgs[i] = Message{Role: "user", Content: fmt.Sprintf("Tell me about dog %d%s.", i, words)}
		} else {
			msgs[i] = Message{Role: "assistant", Content: fmt.Sprintf("Dog %d ran in the park%s.", i, words)}
		}
	}
	return msgs
}

// TestLongTranscriptWindow: after /load of a long transcript the window
// is the longest tail of whole turns that fits, the one dropping message
// by message finds (which rendered the whole conversation per dropped
// message: 1,000 messages took 15 s, 100,000 hours), and a cancelled
// context stops the search.
func TestLongTranscriptWindow(t *testing.T) {
	_, c, smp := setup(t, 512)
	s, err := New(c, smp, Options{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 301, 5000} {
		if err := s.Load(transcript(n)); err != nil {
			t.Fatal(err)
		}
		s.log = append(s.log, Message{Role: "user", Content: "hello"})
		const room = 400
		want := -1 // the first start that fits, found one by one
		for _, start := range s.windowStarts() {
			if n > 301 {
				break
			}
			if _, ok, _ := s.fits(context.Background(), start, room); ok {
				want = start
				break
			}
		}
		start, toks, err := s.windowStart(context.Background(), room)
		if err != nil || len(toks.Body()) > room || (want >= 0 && start != want) || s.log[start].Role != "user" {
			t.Fatalf("%d messages: window from %d (%d tokens, %v), want %d", n, start, len(toks.Body()), err, want)
		}
		if start > 0 {
			if _, ok, _ := s.fits(context.Background(), start-2, room); ok {
				t.Fatalf("%d messages: a longer window fits too", n)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Send(ctx, "hello", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled send: %v", err)
	}
	send(t, s, "hello")
}
