package persona

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona/profile"
)

// Method is a way of personalising a request.
type Method string

// The methods.
const (
	// MethodNone: the input alone.
	MethodNone Method = "none"
	// MethodBM25: the top-k history items for the input, ranked by BM25,
	// in the prompt (RetrievalPrompt; the paper's retrieval baseline).
	MethodBM25 Method = "bm25"
	// MethodRecent: the k most recent history items in the prompt.
	MethodRecent Method = "recent"
	// MethodPPlug: the plug's instruction and persona rows before the
	// input (Layout).
	MethodPPlug Method = "pplug"
	// MethodPPlugBM25: the top BM25 items in the prompt, then the rows,
	// then the input (Request.Context), as many items as the plug was
	// trained with (one, the paper's best row, for a plug trained without).
	MethodPPlugBM25 Method = "pplug+bm25"
)

// Methods lists the methods in report order.
func Methods() []Method {
	return []Method{MethodNone, MethodBM25, MethodRecent, MethodPPlug, MethodPPlugBM25}
}

// Valid reports whether m is a known method.
func (m Method) Valid() bool {
	for _, k := range Methods() {
		if m == k {
			return true
		}
	}
	return false
}

// NeedsPlug reports whether m needs a plug-in.
func (m Method) NeedsPlug() bool { return m == MethodPPlug || m == MethodPPlugBM25 }

// NeedsProfile reports whether m reads the user's history.
func (m Method) NeedsProfile() bool { return m != MethodNone }

// Retrieves reports whether m puts history items into the prompt.
func (m Method) Retrieves() bool {
	return m == MethodBM25 || m == MethodRecent || m == MethodPPlugBM25
}

func (m Method) String() string { return string(m) }

const methodList = "none, bm25, recent, pplug, pplug+bm25"

// ParseMethod parses one method name (case-insensitive).
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ToLower(strings.TrimSpace(s)))
	if !m.Valid() {
		return "", fmt.Errorf("unknown method %q (methods: %s)", s, methodList)
	}
	return m, nil
}

// ParseMethods parses a comma-separated list of methods ("none,bm25").
// Names are case-insensitive; "all" means Methods; duplicates are
// dropped; an empty list or an unknown name is an error.
func ParseMethods(s string) ([]Method, error) {
	var out []Method
	seen := map[Method]bool{}
	add := func(m Method) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if strings.EqualFold(f, "all") {
			for _, m := range Methods() {
				add(m)
			}
			continue
		}
		m, err := ParseMethod(f)
		if err != nil {
			return nil, err
		}
		add(m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no methods given (methods: %s)", methodList)
	}
	return out, nil
}

// Personalizer decides how a request is personalised: the one place that
// turns (user, input) into the prompt text the model reads and the rows
// injected before it, for generate, chat, eval, bench, train and the
// server alike. Set its fields, then Check it; it is safe for concurrent
// use once set. A copy with another Method shares everything else (see
// WithMethod).
type Personalizer struct {
	Method Method
	LLM    *llama.Model
	// The PPlug methods need Plug, Encoder (the history and query encoder)
	// and Backend; Cache (nil: none) keeps item embeddings between runs.
	Plug    *Plug
	Encoder *Encoder
	Backend kernels.Backend
	Cache   *Cache
	// K is the number of items bm25 and recent put in the prompt (0:
	// DefaultTopK). pplug+bm25 takes the plug's trained number instead.
	K int
	// Query picks the part of an input that retrieval and the aggregator
	// look at (LaMP tasks: Task.QueryPart); nil means the whole input.
	Query func(input string) string
}

// WithMethod is a copy of p that personalises with method m.
func (p *Personalizer) WithMethod(m Method) *Personalizer {
	c := *p
	c.Method = m
	return &c
}

// Check reports what the method lacks.
func (p *Personalizer) Check() error {
	switch {
	case !p.Method.Valid():
		return fmt.Errorf("unknown personalisation method %q (methods: %s)", p.Method, methodList)
	case p.LLM == nil:
		return errors.New("personalizer: no LLM")
	case p.Method.NeedsPlug() && p.Plug == nil:
		return fmt.Errorf("method %s needs a Persona-Plug plug-in (--plug)", p.Method)
	case p.Method.NeedsPlug() && (p.Encoder == nil || p.Backend == nil):
		return fmt.Errorf("method %s needs a history encoder and a kernels backend", p.Method)
	case p.K < 0:
		return fmt.Errorf("%d retrieved items: give 1 or more (0: %d)", p.K, DefaultTopK)
	}
	if p.Method.NeedsPlug() {
		if err := p.Plug.CheckModel(p.LLM.NEmbd(), p.Encoder.Dim()); err != nil {
			return err
		}
	}
	return nil
}

// RetrieveK is the number of history items the method puts in the prompt
// (0 for none and pplug).
func (p *Personalizer) RetrieveK() int {
	switch p.Method {
	case MethodBM25, MethodRecent:
		if p.K > 0 {
			return p.K
		}
		return DefaultTopK
	case MethodPPlugBM25:
		if k := p.Plug.RetrieveK; k > 0 {
			return k
		}
		return 1
	}
	return 0
}

// NRows is the number of rows the method injects.
func (p *Personalizer) NRows() int {
	if p.Method.NeedsPlug() {
		return p.Plug.NRows()
	}
	return 0
}

func (p *Personalizer) query(input string) string {
	if p.Query != nil {
		return p.Query(input)
	}
	return input
}

// Persona is one user's history prepared for a Personalizer: the BM25
// index of the items and, for PPlug, their projections resident in the
// kernels backend. It is safe for concurrent use; Close frees it.
type Persona struct {
	p     *Personalizer
	items []profile.Item
	retr  *Retrieval // the BM25 methods
	user  *User      // the PPlug methods

	closeOnce sync.Once
	closeErr  error
}

// Prepare makes a user's persona from their history items, encoding (or
// reading from the cache) what the method needs. progress, when set,
// receives the items encoded so far.
func (p *Personalizer) Prepare(ctx context.Context, items []profile.Item, progress func(done, total int)) (*Persona, EncodeStats, error) {
	if len(items) == 0 {
		return nil, EncodeStats{}, errors.New("the profile has no items to build a persona from")
	}
	if !p.Method.NeedsPlug() {
		u, err := p.PrepareEncoded(items, nil)
		return u, EncodeStats{Items: len(items)}, err
	}
	texts := make([]string, len(items))
	for i, it := range items {
		texts[i] = it.Text
	}
	keys, st, err := EncodeCached(ctx, p.Encoder, p.Cache, texts, progress)
	if err != nil {
		return nil, st, err
	}
	u, err := p.PrepareEncoded(items, keys)
	return u, st, err
}

// PrepareEncoded is Prepare with the items' embeddings already at hand
// (keys [n][DEnc], unit vectors; nil for the methods without a plug), as a
// profile store keeps them.
func (p *Personalizer) PrepareEncoded(items []profile.Item, keys [][]float32) (*Persona, error) {
	if len(items) == 0 {
		return nil, errors.New("the profile has no items to build a persona from")
	}
	u := &Persona{p: p, items: items}
	if p.Method.Retrieves() {
		u.retr = NewRetrieval(items)
	}
	if p.Method.NeedsPlug() {
		user, err := p.Plug.NewUser(p.Backend, items, keys)
		if err != nil {
			return nil, err
		}
		u.user = user
	}
	return u, nil
}

// Close frees the persona's resident buffers. It is idempotent.
func (u *Persona) Close() error {
	if u == nil {
		return nil
	}
	u.closeOnce.Do(func() {
		if u.user != nil {
			u.closeErr = u.user.Close()
		}
	})
	return u.closeErr
}

// Items are the history items behind the persona.
func (u *Persona) Items() []profile.Item { return u.items }

// Len is the number of history items.
func (u *Persona) Len() int { return len(u.items) }

// NRows is the number of rows the persona's requests inject.
func (u *Persona) NRows() int { return u.p.NRows() }

// Method is the persona's personalisation method.
func (u *Persona) Method() Method { return u.p.Method }

// Retrieved is a history item that went into the prompt.
type Retrieved struct {
	Index int     // in the profile
	Score float64 // its BM25 score for the input (0 for recent)
	Item  profile.Item
}

// Request is what personalisation makes of one input: the prompt text the
// model reads (the input, after the retrieved items) and the rows injected
// after BOS and the Context (see Layout and Tokenize).
type Request struct {
	Method Method
	Prompt string
	// Context is the start of Prompt that goes before the rows: the
	// retrieved items of the methods that retrieve ("" for the others). With
	// rows (pplug+bm25) the input then follows the rows as in pplug alone;
	// without rows it changes nothing. Chat and serve, whose rows open the
	// whole conversation, read Prompt alone.
	Context string
	// Rows are the instruction and persona rows [NRows][n_embd] (nil:
	// none), the NInstr instruction rows first.
	Rows   []float32
	NInstr int
	// Weights are the aggregator's weights of the history items (PPlug).
	Weights []float32
	// Retrieved are the items put into the prompt, in prompt order.
	Retrieved []Retrieved
	// EOSBias is added to the end-of-generation token's logit when the
	// answer is sampled (and its likelihood scored): the plug's learned
	// length prior (Plug.EOSBias), 0 for the methods without rows. Set it as
	// llama.SamplerOptions.EOSBias.
	EOSBias float32
}

// LogitBias is the request's EOSBias as a logit bias on m's EOS token (nil
// when there is none), for persona.TargetNLLBiased.
func (r Request) LogitBias(m *llama.Model) map[llama.Token]float32 {
	if r.EOSBias == 0 || m.EOS() < 0 {
		return nil
	}
	return map[llama.Token]float32{m.EOS(): r.EOSBias}
}

// Tokenize tokenizes the prompt with the model's special tokens and says
// after how many of its tokens (after BOS) the rows go (see NewLayout).
// With rows and a Context, the context and the rest are tokenized apart,
// so that the input after the rows has the tokens it has in pplug alone
// (the way training tokenizes it: PromptTokens).
func (r Request) Tokenize(m *llama.Model) (toks []llama.Token, at int, err error) {
	context := r.Context
	if len(r.Rows) == 0 {
		context = "" // nothing to place: the prompt as one text
	}
	return PromptTokens(m, context, r.Prompt)
}

// PromptTokens tokenizes a prompt whose first len(context) bytes (context
// must be a prefix of prompt) go before the rows: the context with the
// model's special tokens, the rest apart without them, and at is the
// number of context tokens after BOS.
func PromptTokens(m *llama.Model, context, prompt string) (toks []llama.Token, at int, err error) {
	if context == "" {
		toks, err = m.Tokenize(prompt, true, true)
		return toks, 0, err
	}
	if !strings.HasPrefix(prompt, context) {
		return nil, 0, errors.New("persona: the context is not the start of the prompt")
	}
	if toks, err = m.Tokenize(context, true, true); err != nil {
		return nil, 0, err
	}
	at = len(toks)
	if m.AddBOS() && at > 0 && toks[0] == m.BOS() {
		at--
	}
	rest, err := m.Tokenize(prompt[len(context):], false, true)
	if err != nil {
		return nil, 0, err
	}
	return append(toks, rest...), at, nil
}

// Inputs is the request laid out for the model (see Layout): BOS, the
// context, the rows, then the rest of the prompt.
func (r Request) Inputs(m *llama.Model) ([]llama.Input, error) {
	toks, at, err := r.Tokenize(m)
	if err != nil {
		return nil, err
	}
	return InputsAt(m, r.Rows, toks, at), nil
}

// Personalize turns one input into its request. A nil persona (a request
// without a user) gets the input alone.
func (u *Persona) Personalize(ctx context.Context, input string) (Request, error) {
	req, _, err := u.personalize(ctx, input)
	return req, err
}

// personalize is Personalize that also returns the query embedding behind
// the rows (nil without rows).
func (u *Persona) personalize(ctx context.Context, input string) (Request, []float32, error) {
	if u == nil || u.p.Method == MethodNone {
		return Request{Method: MethodNone, Prompt: input}, nil, nil
	}
	p := u.p
	req := Request{Method: p.Method, Prompt: input}
	q := p.query(input)
	if p.Method.Retrieves() {
		k := p.RetrieveK()
		var chosen []int
		var scores []float64
		if p.Method == MethodRecent {
			chosen = Recent(u.items, k)
		} else {
			scores = u.retr.Scores(q)
			chosen, _ = TopOrRecent(u.items, scores, k)
		}
		for _, i := range chosen {
			r := Retrieved{Index: i, Item: u.items[i]}
			if scores != nil {
				r.Score = scores[i]
			}
			req.Retrieved = append(req.Retrieved, r)
		}
		req.Context = RetrievalContext(u.items, chosen)
		req.Prompt = req.Context + input
	}
	if !p.Method.NeedsPlug() {
		return req, nil, nil
	}
	qv, err := p.EncodeQuery(ctx, input)
	if err != nil {
		return req, nil, err
	}
	if req.Rows, req.Weights, err = u.user.Rows(qv); err != nil {
		return req, nil, err
	}
	req.EOSBias, req.NInstr = p.Plug.EOSBias, p.Plug.NInstr
	return req, qv, nil
}

// EncodeQuery embeds the part of an input the aggregator looks at (with
// the plug's query prefix). PPlug methods only.
func (p *Personalizer) EncodeQuery(ctx context.Context, input string) ([]float32, error) {
	if !p.Method.NeedsPlug() {
		return nil, fmt.Errorf("method %s encodes no query", p.Method)
	}
	q, err := p.Encoder.EncodeOne(ctx, p.query(input), p.Plug.QueryPrefix)
	if err != nil {
		return nil, fmt.Errorf("encode the query: %w", err)
	}
	return q, nil
}

// RowsFor returns the rows and item weights of the persona for a query
// embedding from EncodeQuery (several personas can share one, as the
// persona check of eval does). PPlug methods only.
func (u *Persona) RowsFor(q []float32) (rows, weights []float32, err error) {
	if u.user == nil {
		return nil, nil, fmt.Errorf("method %s injects no rows", u.p.Method)
	}
	return u.user.Rows(q)
}

// Top returns the k items with the highest weights, highest first (see
// User.Top).
func (u *Persona) Top(weights []float32, k int) []Weighted {
	if u.user == nil {
		return nil
	}
	return u.user.Top(weights, k)
}
