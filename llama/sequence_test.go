package llama

import (
	"context"
	"strings"
	"testing"
)

func storiesPrompt(t *testing.T, m *Model) []Token {
	t.Helper()
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// generateAlone is Generate's answer for one sequence's options.
func generateAlone(t *testing.T, m *Model, toks []Token, o SequenceOptions) Result {
	t.Helper()
	c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: 1})
	res, err := c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: o.MaxTokens, Stop: o.Stop})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// batched is one sequence of a batched loop, the way a server keeps it.
type batched struct {
	seq  *Sequence
	id   SeqID
	pos  Pos
	tok  Token
	text strings.Builder
	done bool
}

// runBatched decodes the prompt in each sequence, then decodes the pending
// token of every live sequence in one batch per step and feeds each
// sequence its output row, until all have ended.
func runBatched(t *testing.T, c *Context, toks []Token, seqs []*batched) {
	t.Helper()
	ctx := context.Background()
	for _, b := range seqs {
		next, err := c.DecodeInputs(ctx, []Input{TokenInput(toks...)}, DecodeOptions{Seq: b.id, Output: OutputLast})
		if err != nil {
			t.Fatal(err)
		}
		b.pos = next
		feed(t, c, b, -1)
	}
	for {
		var batch Batch
		var live []*batched
		for _, b := range seqs {
			if !b.done {
				batch.Tokens, batch.Pos = append(batch.Tokens, b.tok), append(batch.Pos, b.pos)
				batch.Seq, batch.Output = append(batch.Seq, b.id), append(batch.Output, true)
				live = append(live, b)
			}
		}
		if len(live) == 0 {
			return
		}
		if err := c.Decode(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for i, b := range live {
			b.pos++
			feed(t, c, b, i)
		}
	}
}

func feed(t *testing.T, c *Context, b *batched, idx int) {
	t.Helper()
	st, err := b.seq.Sample(c, idx, b.pos)
	if err != nil {
		t.Fatal(err)
	}
	b.text.WriteString(st.Text)
	b.tok, b.done = st.Token, st.Done
}

// Sequences sampled from one batch end as Generate ends each alone: the
// same text, tokens and reason, for a token cap and for a stop string.
func TestSequencesInOneBatchMatchGenerate(t *testing.T) {
	m := loadStories(t)
	toks := storiesPrompt(t, m)
	opts := []SequenceOptions{
		{MaxTokens: 12},
		{MaxTokens: 40, Stop: []string{"Lily"}},
		{MaxTokens: 40, Stop: []string{" named Lily. She"}},
	}
	c := newCtx(t, m, ContextOptions{NCtx: 768, NSeqMax: len(opts), Threads: 1})
	var seqs []*batched
	for i, o := range opts {
		o.Sampling = SamplerOptions{Temp: 0, RepeatPenalty: 1}
		s, err := m.NewSequence(o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		seqs = append(seqs, &batched{seq: s, id: SeqID(i)})
	}
	runBatched(t, c, toks, seqs)
	for i, b := range seqs {
		want := generateAlone(t, m, toks, opts[i])
		if b.seq.Reason() != want.Stop || b.seq.Text() != want.Text || b.text.String() != want.Text ||
			!equalTokens(b.seq.Tokens(), want.Tokens) || b.seq.Generated() != want.Stats.GenTokens {
			t.Errorf("sequence %d: %s %q (%d tokens), Generate: %s %q (%d tokens)", i,
				b.seq.Reason().Detail(), b.seq.Text(), b.seq.Generated(), want.Stop.Detail(), want.Text, want.Stats.GenTokens)
		}
	}
	if seqs[0].seq.Reason() != StopLength || seqs[1].seq.Reason() != StopString {
		t.Fatalf("reasons %s, %s; want max tokens, stop string", seqs[0].seq.Reason().Detail(), seqs[1].seq.Reason().Detail())
	}
}

// The reasons' String is OpenAI's finish_reason.
func TestStopReasonIsOpenAIFinishReason(t *testing.T) {
	for r, want := range map[StopReason]string{
		StopEOG: "stop", StopString: "stop", StopLength: "length", StopContext: "length",
		StopCanceled: "canceled", StopError: "error", StopNone: "",
	} {
		if r.String() != want {
			t.Errorf("%s: String %q, want %q", r.Detail(), r.String(), want)
		}
	}
}

// sampleAfterPrompt decodes the stories prompt and samples s's first token.
func sampleAfterPrompt(t *testing.T, m *Model, s *Sequence, nCtx int) (*Context, Step) {
	t.Helper()
	c := newCtx(t, m, ContextOptions{NCtx: nCtx, Threads: 1})
	next, err := c.DecodeInputs(context.Background(), []Input{TokenInput(storiesPrompt(t, m)...)}, DecodeOptions{Output: OutputLast})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Sample(c, -1, next)
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

// The stop rule's cases one by one: an EOS bias that makes EOS win, a cap
// of zero, a full window, a stop string and the cap on one token (the stop
// string wins), and a sequence that has ended stays ended.
func TestSequenceStopRule(t *testing.T) {
	m := loadStories(t)
	greedyOpts := SamplerOptions{Temp: 0, RepeatPenalty: 1}
	newSeq := func(o SequenceOptions) *Sequence {
		t.Helper()
		if o.Sampling == (SamplerOptions{}) {
			o.Sampling = greedyOpts
		}
		s, err := m.NewSequence(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	eos := greedyOpts
	eos.EOSBias = 100
	s := newSeq(SequenceOptions{Sampling: eos, MaxTokens: 8})
	if _, st := sampleAfterPrompt(t, m, s, 64); !st.Done || st.Reason != StopEOG || len(s.Tokens()) != 0 || s.Generated() != 1 {
		t.Errorf("EOS +100: %+v, %d tokens", st, len(s.Tokens()))
	}
	ign := newSeq(SequenceOptions{Sampling: eos, MaxTokens: 8, IgnoreEOG: true})
	if _, st := sampleAfterPrompt(t, m, ign, 64); st.Done || len(ign.Tokens()) != 1 {
		t.Errorf("EOS ignored: %+v", st)
	}
	zero := newSeq(SequenceOptions{MaxTokens: 0})
	if _, st := sampleAfterPrompt(t, m, zero, 64); !st.Done || st.Reason != StopLength || zero.Generated() != 0 {
		t.Errorf("cap 0: %+v after %d tokens", st, zero.Generated())
	}
	full := newSeq(SequenceOptions{MaxTokens: 8})
	c, _ := sampleAfterPrompt(t, m, full, 64)
	if st, _ := full.Sample(c, -1, Pos(c.NCtxSeq())); !st.Done || st.Reason != StopContext {
		t.Errorf("full window: %+v", st)
	}
	if st, err := full.Sample(c, -1, 0); err != nil || !st.Done || st.Reason != StopContext || full.Generated() != 2 {
		t.Errorf("sampled after the end: %+v, %v", st, err)
	}
	// The first greedy token is "," (see storiesGolden): a cap of one and
	// a stop string on it end the sequence with the stop string.
	both := newSeq(SequenceOptions{MaxTokens: 1, Stop: []string{","}})
	if _, st := sampleAfterPrompt(t, m, both, 64); st.Reason != StopString || both.Text() != "" {
		t.Errorf("stop string and cap on one token: %s %q", st.Reason.Detail(), both.Text())
	}
}

// With logprobs on, each token whose text is in the answer has its
// log-probability once, in order, released with the step that completes
// its text; the token that holds a stop string from its start has none. Each is the first of
// its top list and its offset is where its piece starts.
func TestSequenceLogprobs(t *testing.T) {
	m := loadStories(t)
	toks := storiesPrompt(t, m)
	for _, stop := range [][]string{nil, {" Lily"}} {
		probs, s := replayProbs(t, m, toks, stop)
		var pieces strings.Builder
		for i, p := range probs {
			if p.Offset != pieces.Len() || len(p.Top) != 3 || p.Top[0].Token != p.Token || p.Top[0].Logprob != p.Logprob || p.Logprob > 0 {
				t.Fatalf("stop %v, token %d: %+v at offset %d", stop, i, p, pieces.Len())
			}
			pieces.Write(p.Piece)
		}
		switch {
		case stop == nil && (len(probs) != 10 || pieces.String() != s.Text()):
			t.Errorf("no stop: %d logprobs of %q for the text %q", len(probs), pieces.String(), s.Text())
		case stop != nil && (s.Reason() != StopString || len(probs) != len(s.Tokens())-1 || pieces.String() != s.Text()):
			t.Errorf("stop %v: %d logprobs of %d tokens, pieces %q for the text %q", stop, len(probs), len(s.Tokens()), pieces.String(), s.Text())
		}
	}
	if _, err := m.NewSequence(SequenceOptions{Logprobs: true, TopLogprobs: MaxTopLogprobs + 1}); err == nil {
		t.Error("accepted more top logprobs than MaxTopLogprobs")
	}
	if _, err := NewSequence(SequenceOptions{}); err == nil {
		t.Error("NewSequence without a sampler")
	}
}

// replayProbs runs a greedy sequence of 10 tokens with logprobs step by
// step and returns the log-probabilities the steps released.
func replayProbs(t *testing.T, m *Model, toks []Token, stop []string) ([]TokenProb, *Sequence) {
	t.Helper()
	s, err := m.NewSequence(SequenceOptions{Sampling: SamplerOptions{Temp: 0, RepeatPenalty: 1}, MaxTokens: 10, Stop: stop, Logprobs: true, TopLogprobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := newCtx(t, m, ContextOptions{NCtx: 128, Threads: 1})
	ctx := context.Background()
	pos, err := c.DecodeInputs(ctx, []Input{TokenInput(toks...)}, DecodeOptions{Output: OutputLast})
	if err != nil {
		t.Fatal(err)
	}
	var probs []TokenProb
	for {
		st, err := s.Sample(c, -1, pos)
		if err != nil {
			t.Fatal(err)
		}
		probs = append(probs, st.Probs...)
		if st.Done {
			return probs, s
		}
		if pos, err = c.DecodeInputs(ctx, []Input{TokenInput(st.Token)}, DecodeOptions{Pos: pos, Output: OutputLast}); err != nil {
			t.Fatal(err)
		}
	}
}

// A sequence with its own sampler frees it in Close (twice is fine); one
// with the caller's leaves it open.
func TestSequenceSamplerOwnership(t *testing.T) {
	m := loadStories(t)
	own, err := m.NewSequence(SequenceOptions{Sampling: SamplerOptions{Temp: 0, RepeatPenalty: 1}})
	if err != nil {
		t.Fatal(err)
	}
	smp := own.Sampler()
	for range 2 {
		if err := own.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := smp.Accept(0); err != ErrClosed {
		t.Errorf("the sequence's own sampler is open after Close: %v", err)
	}
	mine := greedy(t)
	borrowed, err := NewSequence(SequenceOptions{Sampler: mine})
	if err != nil {
		t.Fatal(err)
	}
	borrowed.Close()
	if err := mine.Accept(0); err != nil {
		t.Errorf("Close closed the caller's sampler: %v", err)
	}
}
