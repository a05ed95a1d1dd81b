package train

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// synthData writes a small synthetic-users dataset and loads its train and
// dev splits as examples, with the LLM itself as the encoder.
func synthData(t testing.TB, m *llama.Model, users int) (train, dev []Example, plug *persona.Plug, dir string) {
	t.Helper()
	dir = t.TempDir()
	ds, err := synthusers.Generate(synthusers.Options{Users: users, Items: 8, QuestionsPerUser: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := synthusers.Write(dir, ds); err != nil {
		t.Fatal(err)
	}
	enc, err := persona.NewEncoder(m, persona.EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	scale, _ := persona.TokenEmbeddingScale(m)
	plug, err = persona.NewPlug(enc.Dim(), m.NEmbd(), scale, persona.PlugOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cache := &persona.Cache{Dir: filepath.Join(dir, "cache")}
	load := func(split string) []Example {
		ex, err := LoadExamples(context.Background(), m, enc, cache, plug,
			filepath.Join(dir, split+"_questions.json"), filepath.Join(dir, split+"_outputs.json"),
			DataOptions{Task: synthusers.Task})
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}
	return load("train"), load("dev"), plug, dir
}

func clonePlug(p *persona.Plug) *persona.Plug {
	c := *p
	c.W1 = append([]float32(nil), p.W1...)
	c.B1 = append([]float32(nil), p.B1...)
	c.W2 = append([]float32(nil), p.W2...)
	c.B2 = append([]float32(nil), p.B2...)
	c.Instr = append([]float32(nil), p.Instr...)
	c.Meta = map[string]string{}
	return &c
}

func TestTrainingLearnsDeterministicallyAndResumes(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, devEx, init, dir := synthData(t, m, 8)
	o := Options{Epochs: 2, Batch: 8, LR: 3e-3, Augment: 1, Seed: 5, Threads: 1}

	run := func(name string, o Options) (*persona.Plug, Result) {
		p := clonePlug(init)
		o.Output = filepath.Join(dir, name+".plug.gguf")
		res, err := Train(context.Background(), path, m, p, trainEx, devEx, o)
		if err != nil {
			t.Fatal(err)
		}
		return p, res
	}
	a, ra := run("a", o)
	t.Logf("%d examples, %d steps, mean step %s, train loss %v, dev loss %v", ra.Examples, ra.Steps, ra.MeanStep, ra.TrainLoss, ra.DevLoss)
	if ra.TrainLoss[1] >= ra.TrainLoss[0] || ra.DevLoss[1] >= ra.DevLoss[0] {
		t.Fatalf("the loss did not fall: train %v dev %v", ra.TrainLoss, ra.DevLoss)
	}
	// The same seed gives the same plug, bit for bit.
	b, _ := run("b", o)
	pa, _ := persona.ReadPlug(filepath.Join(dir, "a.plug.gguf"))
	pb, _ := persona.ReadPlug(filepath.Join(dir, "b.plug.gguf"))
	for _, pair := range [][2][]float32{{pa.W1, pb.W1}, {pa.B1, pb.B1}, {pa.W2, pb.W2}, {pa.B2, pb.B2}, {pa.Instr, pb.Instr}, {a.W2, b.W2}} {
		if !bitEqual(pair[0], pair[1]) {
			t.Fatal("two runs with the same seed gave different plugs")
		}
	}
	// A run interrupted after epoch 1 and resumed from its checkpoint ends
	// where the uninterrupted run did.
	oc := o
	oc.Epochs = 2
	oc.CheckpointDir = filepath.Join(dir, "ckpt")
	_, rc := run("c", oc)
	if len(rc.Checkpoints) != 2 {
		t.Fatalf("checkpoints %v", rc.Checkpoints)
	}
	resumed, err := persona.ReadPlug(rc.Checkpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	or := o
	or.Resume = rc.Checkpoints[0]
	or.Output = filepath.Join(dir, "resumed.plug.gguf")
	if _, err := Train(context.Background(), path, m, resumed, trainEx, devEx, or); err != nil {
		t.Fatal(err)
	}
	if d := maxAbs(resumed.W2, a.W2); d > 1e-6 {
		t.Fatalf("resumed run differs from the uninterrupted one by %.3g", d)
	}
	// A damaged optimizer state is refused.
	st, _ := os.ReadFile(rc.Checkpoints[0] + ".opt")
	st[len(st)/2] ^= 1
	os.WriteFile(rc.Checkpoints[0]+".opt", st, 0o644)
	p, _ := persona.ReadPlug(rc.Checkpoints[0])
	if _, err := Train(context.Background(), path, m, p, trainEx, devEx, or); err == nil {
		t.Fatal("resumed from a damaged optimizer state")
	}
}

func bitEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func maxAbs(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		if x := float64(a[i] - b[i]); x > d {
			d = x
		} else if -x > d {
			d = -x
		}
	}
	return d
}

func TestTrainingStopsOnCancelAndSaves(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	ctx, cancel := context.WithCancel(context.Background())
	out := filepath.Join(dir, "stopped.plug.gguf")
	res, err := Train(ctx, path, m, plug, trainEx, nil, Options{Epochs: 50, Batch: 2, LR: 1e-3, Threads: 1, Output: out,
		Progress: func(p Progress) {
			if p.Step == 3 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || !res.Interrupted {
		t.Fatalf("err %v interrupted %v", err, res.Interrupted)
	}
	p, err := persona.ReadPlug(out)
	if err != nil {
		t.Fatalf("no plug after the interrupt: %v", err)
	}
	if p.Meta["steps"] != "3" {
		t.Fatalf("saved after %s steps, want 3", p.Meta["steps"])
	}
	if _, err := os.Stat(out + ".opt"); err != nil {
		t.Fatal("no optimizer state after the interrupt")
	}
}

func TestTrainingRefusesBadInput(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	if _, err := Train(context.Background(), path, m, plug, nil, nil, Options{Output: filepath.Join(dir, "x")}); err == nil {
		t.Error("trained on nothing")
	}
	wide := clonePlug(plug)
	wide.DLLM++
	if _, err := NewGraph(path, m, wide, Shape{Batch: 1, Tokens: 8, Items: 1, Targets: 1}, 1, false); err == nil {
		t.Error("a plug of the wrong width was accepted")
	}
	bad := append([]Example(nil), trainEx[0])
	bad[0].Keys = [][]float32{make([]float32, plug.DEnc+1)}
	shape, _ := ShapeFor(plug, 1, bad)
	g, err := NewGraph(path, m, plug, shape, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Fill(bad); err == nil {
		t.Error("an embedding of the wrong width was accepted")
	}
	if _, err := NewGraph(testenv.BertVocab(t), m, plug, shape, 1, false); err == nil {
		t.Error("trained on a vocabulary-only BERT file")
	}
}
