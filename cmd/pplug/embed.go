package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/llama"
)

// pplug embed is llama.cpp's llama-embedding: the prompt is split into texts
// (one per line by default), each is embedded (pooled, or one vector per
// token with --pooling none), normalised and printed.

func embedCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "the `TEXT`s, split by --embd-separator (\"-\" reads standard input)"},
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the texts from `FILE`"},
		&cli.StringFlag{Name: "pooling", Value: "default", Usage: "default (the model's own; none for a plain LLM), none (one vector per token), mean, cls or last"},
		&cli.IntFlag{Name: "embd-normalize", Value: 2, Usage: "normalisation: -1 none, 0 max absolute scaled to int16, 1 taxicab, 2 euclidean, >2 p-norm"},
		&cli.StringFlag{Name: "embd-output-format", Usage: "output: empty for text, json (OpenAI style), json+ (adds the cosine similarity matrix), array or raw"},
		&cli.StringFlag{Name: "embd-separator", Value: "\n", Usage: "separator between texts in the prompt"},
		&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: 0, Usage: "threads (default: physical cores)"},
	}
	flags = append(flags, modelFlags()...)
	return &cli.Command{
		Name:  "embed",
		Usage: "print the embeddings of texts (llama-embedding): an encoder's (BERT/BGE) or an LLM's pooled hidden states",
		UsageText: "pplug embed -m MODEL -p TEXT [--pooling mean] [--embd-normalize 2] [--embd-output-format json|json+|array|raw]\n" +
			"   pplug embed -m BGE.gguf -f texts.txt --embd-output-format array   (one text per line)",
		Flags:  flags,
		Action: runEmbed,
	}
}

// embdNormalize is common_embd_normalize: -1 none, 0 scale the largest
// magnitude to 32760 (int16), 1 taxicab, 2 euclidean, >2 p-norm.
func embdNormalize(v []float32, norm int) {
	var sum float64
	switch {
	case norm < 0:
		return
	case norm == 0:
		for _, x := range v {
			sum = math.Max(sum, math.Abs(float64(x)))
		}
		sum /= 32760
	case norm == 2:
		for _, x := range v {
			sum += float64(x) * float64(x)
		}
		sum = math.Sqrt(sum)
	default:
		sum = pNorm(v, float64(norm))
	}
	scale := 0.0
	if sum > 0 {
		scale = 1 / sum
	}
	for i := range v {
		v[i] = float32(float64(v[i]) * scale)
	}
}

// pNorm is the p-norm of v, computed on v scaled by its largest magnitude
// m, as m * (sum |x/m|^p)^(1/p): each term is at most 1 and the largest is
// 1, so a large p neither overflows nor underflows to 0, and the norm tends
// to m (the max norm) as p grows.
func pNorm(v []float32, p float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	if m == 0 || math.IsInf(m, 0) || math.IsNaN(m) {
		return m
	}
	var sum float64
	for _, x := range v {
		sum += math.Pow(math.Abs(float64(x))/m, p)
	}
	return m * math.Pow(sum, 1/p)
}

// cosine is common_embd_similarity_cos.
func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	switch {
	case aa == 0 && bb == 0:
		return 1
	case aa == 0 || bb == 0:
		return 0
	}
	return ab / (math.Sqrt(aa) * math.Sqrt(bb))
}

// splitTexts splits the prompt like llama-embedding; a separator that ends
// the input (the newline of a file) does not start an empty text.
func splitTexts(s, sep string) []string {
	if sep == "" {
		return []string{s}
	}
	s = strings.TrimSuffix(s, sep)
	return strings.Split(s, sep)
}

func runEmbed(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	o, err := embedOptionsFrom(c)
	if err != nil {
		return err
	}
	return o.run(c.Context, c.App.Writer, c.App.ErrWriter)
}

// embedOptions are embed's flags, read and checked once.
type embedOptions struct {
	Model   modelConfig
	Texts   []string
	Format  string
	Norm    int
	Pooling llama.Pooling
	Threads int
}

func embedOptionsFrom(c *cli.Context) (*embedOptions, error) {
	o := &embedOptions{Format: c.String("embd-output-format"), Norm: c.Int("embd-normalize"), Threads: c.Int("threads")}
	switch o.Format {
	case "", "json", "json+", "array", "raw":
	default:
		return nil, usagef("--embd-output-format %q: want json, json+, array, raw or nothing (text)", o.Format)
	}
	if o.Norm < -1 {
		return nil, usagef("--embd-normalize %d: want -1 (none), 0 (int16), 1 (taxicab), 2 (euclidean) or more (p-norm)", o.Norm)
	}
	var err error
	if o.Pooling, err = llama.ParsePooling(c.String("pooling")); err != nil {
		return nil, usageError{err}
	}
	if o.Threads < 0 {
		return nil, usagef("--threads must not be negative")
	}
	if !c.IsSet("prompt") && c.String("file") == "" {
		return nil, usagef("no text given: pass -p TEXT, -p - (standard input) or -f FILE")
	}
	text, err := readPrompt(c)
	if err != nil {
		return nil, err
	}
	o.Texts = splitTexts(text, c.String("embd-separator"))
	if o.Model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	return o, nil
}

// run embeds the texts, one per decode, and prints them.
func (o *embedOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	m, err := o.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	pool, poolName, err := o.pooling(m)
	if err != nil {
		return err
	}
	toks, longest, err := embedTokens(m, o.Texts)
	if err != nil {
		return err
	}
	// One text per decode, in one ubatch (non-causal encoders need it).
	lc, err := m.NewContext(llama.ContextOptions{NCtx: longest, NBatch: longest, NUBatch: longest,
		Threads: o.Threads, Embeddings: true, Pooling: pool})
	if err != nil {
		return err
	}
	defer lc.Close()
	vecs, err := embedAll(ctx, lc, toks, pool)
	if err != nil {
		return err
	}
	for _, v := range vecs {
		embdNormalize(v, o.Norm)
	}
	return writeEmbeddings(stdout, o.Format, o.Norm, vecs, poolName != "none")
}

// pooling is the pooling to run with and its name: --pooling, else the
// model's own; a model that cannot give embeddings is an error.
func (o *embedOptions) pooling(m *llama.Model) (llama.Pooling, string, error) {
	info := m.Info()
	if info.HasEncoder && info.HasDecoder {
		return 0, "", fmt.Errorf("%s: embeddings of encoder-decoder models are not supported (as in llama-embedding)", info.Path)
	}
	pool, poolName := o.Pooling, o.Pooling.String()
	if pool == llama.PoolingDefault {
		if poolName = m.OwnPooling(); poolName == "rank" {
			return 0, "", fmt.Errorf("%s pools with rank (a reranker): it gives scores, not embeddings; choose --pooling mean, cls or last", info.Path)
		}
		if poolName == "none" {
			pool = llama.PoolingNone
		}
	}
	return pool, poolName, nil
}

// embedTokens tokenizes the texts; an empty one or one longer than the
// model's context is an error naming it.
func embedTokens(m *llama.Model, texts []string) (toks [][]llama.Token, longest int, err error) {
	toks = make([][]llama.Token, len(texts))
	longest = 1
	for i, s := range texts {
		t, err := m.Tokenize(s, true, true)
		if err != nil {
			return nil, 0, fmt.Errorf("text %d: %w", i+1, err)
		}
		if len(t) == 0 {
			return nil, 0, fmt.Errorf("text %d (%q) gives no tokens: remove empty texts or choose another --embd-separator", i+1, s)
		}
		if n := m.Info().NCtxTrain; n > 0 && len(t) > n {
			return nil, 0, fmt.Errorf("text %d has %d tokens, more than the model's context of %d: split it", i+1, len(t), n)
		}
		toks[i] = t
		longest = max(longest, len(t))
	}
	return toks, longest, nil
}

// embedAll decodes each text alone and returns its pooled vector, or one
// vector per token without pooling.
func embedAll(ctx context.Context, lc *llama.Context, toks [][]llama.Token, pool llama.Pooling) ([][]float32, error) {
	var vecs [][]float32
	for i, t := range toks {
		b := llama.Batch{Tokens: t, Pos: make([]llama.Pos, len(t)), Seq: make([]llama.SeqID, len(t)), Output: make([]bool, len(t))}
		for j := range t {
			b.Pos[j], b.Output[j] = llama.Pos(j), true
		}
		if err := lc.ClearMemory(); err != nil {
			return nil, err
		}
		if err := lc.Decode(ctx, b); err != nil {
			return nil, fmt.Errorf("embed text %d: %w", i+1, err)
		}
		if pool == llama.PoolingNone {
			for j := range t {
				v, err := lc.Embeddings(j)
				if err != nil {
					return nil, fmt.Errorf("embed text %d, token %d: %w", i+1, j, err)
				}
				vecs = append(vecs, v)
			}
			continue
		}
		v, err := lc.SeqEmbeddings(0)
		if err != nil {
			return nil, fmt.Errorf("embed text %d: %w", i+1, err)
		}
		vecs = append(vecs, v)
	}
	return vecs, nil
}

// writeEmbeddings prints the vectors in llama-embedding's formats: values
// with 7 decimals (whole numbers for --embd-normalize 0) in json, array and
// raw; the text format prints 6 and, for several pooled texts, their cosine
// similarity matrix.
func writeEmbeddings(w io.Writer, format string, norm int, vecs [][]float32, pooled bool) error {
	prec := 7
	if norm == 0 {
		prec = 0
	}
	num := func(x float32) string { return strconv.FormatFloat(float64(x), 'f', prec, 32) }
	row := func(v []float32, sep string) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = num(x)
		}
		return strings.Join(s, sep)
	}
	var sb strings.Builder
	switch format {
	case "":
		tprec := 6
		if norm == 0 {
			tprec = 0
		}
		for j, v := range vecs {
			fmt.Fprintf(&sb, "embedding %d:", j)
			for _, x := range v {
				fmt.Fprintf(&sb, " %9.*f", tprec, x)
			}
			sb.WriteByte('\n')
		}
		if pooled && len(vecs) > 1 {
			sb.WriteString("\ncosine similarity matrix:\n\n")
			for i := range vecs {
				for j := range vecs {
					fmt.Fprintf(&sb, "%6.2f ", cosine(vecs[i], vecs[j]))
				}
				sb.WriteByte('\n')
			}
		}
	case "array":
		sb.WriteString("[")
		for j, v := range vecs {
			if j > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("[" + row(v, ",") + "]")
		}
		sb.WriteString("]\n")
	case "raw":
		for _, v := range vecs {
			sb.WriteString(row(v, " ") + "\n")
		}
	case "json", "json+":
		sb.WriteString("{\n  \"object\": \"list\",\n  \"data\": [\n")
		for j, v := range vecs {
			fmt.Fprintf(&sb, "    {\n      \"object\": \"embedding\",\n      \"index\": %d,\n      \"embedding\": [%s]\n    }", j, row(v, ","))
			if j < len(vecs)-1 {
				sb.WriteString(",")
			}
			sb.WriteString("\n")
		}
		sb.WriteString("  ]")
		if format == "json+" && len(vecs) > 1 {
			sb.WriteString(",\n  \"cosineSimilarity\": [\n")
			for i := range vecs {
				s := make([]string, len(vecs))
				for j := range vecs {
					s[j] = strconv.FormatFloat(cosine(vecs[i], vecs[j]), 'f', 2, 64)
				}
				sb.WriteString("    [" + strings.Join(s, ", ") + "]")
				if i < len(vecs)-1 {
					sb.WriteString(",")
				}
				sb.WriteString("\n")
			}
			sb.WriteString("  ]")
		}
		sb.WriteString("\n}\n")
	default:
		return errors.New("unknown embedding format " + format)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
