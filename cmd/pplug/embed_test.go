package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama/synth"
)

// synthBert writes a small random-weight BERT (CLS pooling in its metadata)
// with the real BGE vocabulary.
func synthBert(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bert.gguf")
	err := synth.Write(p, testenv.BertVocab(t), synth.Spec{
		Arch: "bert", NEmbd: 64, NLayer: 2, NHead: 4, NFF: 128, NCtx: 128,
		Type: cgo.TypeF32, Pooling: cgo.PoolingCLS, Std: 0.1, Seed: 7,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// embedJSON runs pplug embed with --embd-output-format json and returns the
// vectors.
func embedJSON(t *testing.T, args ...string) [][]float64 {
	t.Helper()
	code, out, errs := pplug(t, "", append([]string{"embed", "-t", "1", "--embd-output-format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("embed %v: exit %d: %s", args, code, errs)
	}
	var doc struct {
		Object string
		Data   []struct {
			Object    string
			Index     int
			Embedding []float64
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("embed %v: %v\n%s", args, err, out)
	}
	if doc.Object != "list" {
		t.Fatalf("object %q", doc.Object)
	}
	var vecs [][]float64
	for i, d := range doc.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Fatalf("data[%d]: object %q index %d", i, d.Object, d.Index)
		}
		vecs = append(vecs, d.Embedding)
	}
	return vecs
}

func norm(v []float64, p float64) float64 {
	var s float64
	for _, x := range v {
		s += math.Pow(math.Abs(x), p)
	}
	return math.Pow(s, 1/p)
}

func TestEmbedStoriesMeanPooling(t *testing.T) {
	model := testenv.Stories260K(t)
	texts := "Once upon a time\nLily went to the park"
	vecs := embedJSON(t, "-m", model, "--pooling", "mean", "-p", texts)
	if len(vecs) != 2 || len(vecs[0]) != 64 || len(vecs[1]) != 64 {
		t.Fatalf("got %d vectors, want 2 of n_embd 64", len(vecs))
	}
	for i, v := range vecs {
		if n := norm(v, 2); math.Abs(n-1) > 1e-5 {
			t.Errorf("vector %d: euclidean norm %v, want 1 (--embd-normalize 2 is the default)", i, n)
		}
	}
	// Mean pooling is the mean of the per-token vectors (--pooling none),
	// both unnormalised.
	raw := embedJSON(t, "-m", model, "--pooling", "mean", "--embd-normalize", "-1", "-p", "Once upon a time")
	toks := embedJSON(t, "-m", model, "--pooling", "none", "--embd-normalize", "-1", "-p", "Once upon a time")
	if len(raw) != 1 || len(toks) < 3 {
		t.Fatalf("%d pooled and %d token vectors", len(raw), len(toks))
	}
	for j := range raw[0] {
		var s float64
		for _, v := range toks {
			s += v[j]
		}
		if d := math.Abs(s/float64(len(toks)) - raw[0][j]); d > 1e-4 {
			t.Fatalf("dim %d: mean of token vectors %v, pooled %v", j, s/float64(len(toks)), raw[0][j])
		}
	}
	// The pooled vector normalised by pplug equals the raw one normalised here.
	n := norm(raw[0], 2)
	for j := range raw[0] {
		if d := math.Abs(raw[0][j]/n - vecs[0][j]); d > 1e-5 {
			t.Fatalf("dim %d: %v normalised is %v, pplug printed %v", j, raw[0][j], raw[0][j]/n, vecs[0][j])
		}
	}
	// Taxicab and int16 normalisation.
	v1 := embedJSON(t, "-m", model, "--pooling", "mean", "--embd-normalize", "1", "-p", "Once upon a time")[0]
	if n := norm(v1, 1); math.Abs(n-1) > 1e-4 {
		t.Errorf("--embd-normalize 1: taxicab norm %v", n)
	}
	v0 := embedJSON(t, "-m", model, "--pooling", "mean", "--embd-normalize", "0", "-p", "Once upon a time")[0]
	maxAbs := 0.0
	for _, x := range v0 {
		maxAbs = math.Max(maxAbs, math.Abs(x))
		if x != math.Trunc(x) {
			t.Errorf("--embd-normalize 0 prints whole numbers, got %v", x)
			break
		}
	}
	if maxAbs != 32760 {
		t.Errorf("--embd-normalize 0: largest magnitude %v, want 32760", maxAbs)
	}

	// array and raw carry the same numbers; texts come from stdin too.
	code, out, errs := pplug(t, texts, "embed", "-m", model, "--pooling", "mean", "-t", "1", "-p", "-", "--embd-output-format", "array")
	var arr [][]float64
	if code != 0 || json.Unmarshal([]byte(out), &arr) != nil || len(arr) != 2 {
		t.Fatalf("array: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = pplug(t, "", "embed", "-m", model, "--pooling", "mean", "-t", "1", "-p", texts, "--embd-output-format", "raw")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("raw: exit %d\n%s%s", code, out, errs)
	}
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) != 64 {
			t.Fatalf("raw line %d has %d values", i, len(f))
		}
		for j, s := range f {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil || math.Abs(x-vecs[i][j]) > 1e-6 || math.Abs(arr[i][j]-vecs[i][j]) > 1e-6 {
				t.Fatalf("vector %d dim %d: raw %q, array %v, json %v", i, j, s, arr[i][j], vecs[i][j])
			}
		}
	}
}

func TestEmbedBert(t *testing.T) {
	model := synthBert(t)
	// The model's own pooling (CLS) applies by default; equal texts give
	// equal vectors, json+ adds their cosine similarities.
	code, out, errs := pplug(t, "", "embed", "-m", model, "-t", "1", "--embd-output-format", "json+",
		"-p", "hello world\nhello world\nthe cat sat on the mat")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var doc struct {
		Data             []struct{ Embedding []float64 }
		CosineSimilarity [][]float64 `json:"cosineSimilarity"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json+: %v\n%s", err, out)
	}
	if len(doc.Data) != 3 || len(doc.Data[0].Embedding) != 64 || len(doc.CosineSimilarity) != 3 {
		t.Fatalf("json+: %d vectors, %d similarity rows", len(doc.Data), len(doc.CosineSimilarity))
	}
	for j := range doc.Data[0].Embedding {
		if doc.Data[0].Embedding[j] != doc.Data[1].Embedding[j] {
			t.Fatalf("the same text embedded differently at dim %d", j)
		}
	}
	if doc.CosineSimilarity[0][1] != 1 || doc.CosineSimilarity[2][2] != 1 || doc.CosineSimilarity[0][2] >= 1 {
		t.Errorf("cosine similarities %v", doc.CosineSimilarity)
	}
	// CLS pooling: the pooled vector is the first token's.
	cls := embedJSON(t, "-m", model, "-p", "the cat sat on the mat", "--embd-normalize", "-1")
	toks := embedJSON(t, "-m", model, "--pooling", "none", "-p", "the cat sat on the mat", "--embd-normalize", "-1")
	for j := range cls[0] {
		if math.Abs(cls[0][j]-toks[0][j]) > 1e-5 {
			t.Fatalf("dim %d: cls %v, first token %v", j, cls[0][j], toks[0][j])
		}
	}
	// Text output: one line per vector and the similarity matrix.
	code, out, _ = pplug(t, "", "embed", "-m", model, "-t", "1", "-p", "a\nb")
	if code != 0 || !strings.HasPrefix(out, "embedding 0: ") || !strings.Contains(out, "cosine similarity matrix") {
		t.Fatalf("text output:\n%s", out)
	}
}

func TestEmbedBadInput(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-p", "x", "--embd-output-format", "xml"}, 2, "embd-output-format"},
		{[]string{"-p", "x", "--embd-normalize", "-2"}, 2, "embd-normalize"},
		{[]string{"-p", "x", "--pooling", "max"}, 2, "pooling"},
		{[]string{}, 2, "no text given"},
		{[]string{"-m", testenv.BertVocab(t), "-p", "x"}, 1, "missing tensor"}, // vocabulary only
	} {
		args := append([]string{"embed", "-m", model}, tc.args...)
		code, _, errs := pplug(t, "", args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errs, tc.want)
		}
	}
}

// TestEmbdNormalizeLargeP: a p-norm with a large p is computed on the
// vector scaled by its largest magnitude, so it neither underflows (a
// vector of zeros) nor overflows: as p grows the result tends to the
// vector over its max norm, and a small p agrees with the plain formula.
func TestEmbdNormalizeLargeP(t *testing.T) {
	base := []float32{0.02, -0.5, 0.125, 3e-5, -0.25}
	for _, p := range []int{3, 7, 1000, 1_000_000} {
		v := append([]float32(nil), base...)
		embdNormalize(v, p)
		var plain float64
		for _, x := range base {
			plain += math.Pow(math.Abs(float64(x)), float64(p))
		}
		plain = math.Pow(plain, 1/float64(p))
		for i, x := range v {
			want := float64(base[i]) / 0.5 // the max norm's result
			if p < 100 {
				want = float64(base[i]) / plain
			}
			if math.Abs(float64(x)-want) > 1e-3*math.Abs(want)+1e-7 {
				t.Errorf("p=%d: v[%d] = %v, want %v", p, i, x, want)
			}
		}
	}
	// Tiny values: their p-th powers underflow unless scaled first.
	v := []float32{1e-20, -2e-20}
	embdNormalize(v, 1000)
	if math.Abs(float64(v[1])+1) > 1e-3 || math.Abs(float64(v[0])-0.5) > 1e-3 {
		t.Errorf("tiny values, p=1000: %v, want about [0.5 -1]", v)
	}
	zero := []float32{0, 0}
	embdNormalize(zero, 1000)
	if zero[0] != 0 || zero[1] != 0 {
		t.Errorf("a zero vector became %v", zero)
	}
	// Through the command: the largest magnitude comes out near 1.
	model := testenv.Stories260K(t)
	got := embedJSON(t, "-m", model, "--pooling", "mean", "--embd-normalize", "1000", "-p", "Once upon a time")[0]
	var maxAbs float64
	for _, x := range got {
		maxAbs = math.Max(maxAbs, math.Abs(x))
	}
	if math.Abs(maxAbs-1) > 0.01 {
		t.Errorf("embed --embd-normalize 1000: largest magnitude %v, want about 1 (max norm)", maxAbs)
	}
}
