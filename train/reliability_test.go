package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/persona"
)

func TestOptionsValidate(t *testing.T) {
	good := []Options{
		{}, // every default
		{Epochs: 1, Batch: 1, LR: 1e-3, WeightDecay: -1, Warmup: -1, MaxGradNorm: -1, Augment: -1},
		{Warmup: 1, Augment: MaxAugment, Batch: math.MaxInt},
	}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v refused: %v", o, err)
		}
	}
	bad := map[string]Options{
		"epochs":       {Epochs: -1},
		"batch":        {Batch: -3},
		"learning":     {LR: -1},
		"nan rate":     {LR: math.NaN()},
		"weight decay": {WeightDecay: math.Inf(1)},
		"warm-up":      {Warmup: 1.5},
		"gradient":     {MaxGradNorm: math.NaN()},
		"augment":      {Augment: MaxAugment + 1},
		"threads":      {Threads: -2},
		"betas":        {Beta1: 1},
		"epsilon":      {Eps: -1},
		"times":        {LR: 1, WeightDecay: 2},
	}
	for want, o := range bad {
		err := o.Validate()
		if err == nil {
			t.Errorf("%s: %+v accepted", want, o)
		} else if !strings.Contains(err.Error(), strings.Split(want, " ")[len(strings.Split(want, " "))-1]) {
			t.Errorf("%s: the error does not say what is wrong: %v", want, err)
		}
	}
}

// TestTrainChecksOutputsBeforeTraining: a bad -o or checkpoint folder is an
// error before the first step, not after the last one.
func TestTrainChecksOutputsBeforeTraining(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Output: filepath.Join(dir, "missing", "x.gguf")}, filepath.Join(dir, "missing")},
		{Options{Output: dir}, "is a folder"},
		{Options{Output: filepath.Join(file, "x.gguf")}, file},
		{Options{Output: filepath.Join(dir, "ok.gguf"), CheckpointDir: filepath.Join(file, "ckpt")}, "checkpoint folder"},
	} {
		steps := 0
		c.o.Epochs, c.o.Batch, c.o.Threads = 1, 2, 1
		c.o.Progress = func(Progress) { steps++ }
		_, err := Train(context.Background(), path, m, clonePlug(plug), trainEx, nil, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("output %q, checkpoints %q: err %v, want one naming %q", c.o.Output, c.o.CheckpointDir, err, c.want)
		}
		if steps > 0 {
			t.Errorf("output %q: %d steps trained before the bad path was noticed", c.o.Output, steps)
		}
	}
}

// failingFS makes the checkpoint writes whose destination matches fail
// after a few bytes, as a full disk does.
func failingFS(t *testing.T, match func(dst string) bool) *atomic.Int32 {
	var failures atomic.Int32
	orig := checkpointWriter
	t.Cleanup(func() { checkpointWriter = orig })
	checkpointWriter = func(dst string, w io.Writer) io.Writer {
		if !match(dst) {
			return w
		}
		failures.Add(1)
		return &fullDisk{w: w, room: 100}
	}
	return &failures
}

// fullDisk fails as a write to a full disk does, with the error the file
// system gives.
type fullDisk struct {
	w    io.Writer
	room int
}

func (d *fullDisk) Write(b []byte) (int, error) {
	if len(b) > d.room {
		n, _ := d.w.Write(b[:d.room])
		d.room = 0
		return n, syscall.ENOSPC
	}
	d.room -= len(b)
	return d.w.Write(b)
}

// TestCheckpointWriteFailureKeepsPairsAndTrains: a checkpoint whose .opt
// cannot be written leaves neither half; training warns and goes on.
func TestCheckpointWriteFailureKeepsPairsAndTrains(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	ckpt := filepath.Join(dir, "ckpt")
	failures := failingFS(t, func(dst string) bool { return filepath.Base(dst) == "epoch-2.plug.gguf.opt" })
	var log []string
	out := filepath.Join(dir, "out.plug.gguf")
	res, err := Train(context.Background(), path, m, clonePlug(plug), trainEx, nil, Options{
		Epochs: 3, Batch: 8, LR: 1e-3, Augment: -1, Threads: 1, Output: out, CheckpointDir: ckpt,
		Log: func(line string) { log = append(log, line) },
	})
	if err != nil {
		t.Fatalf("training stopped on a failed checkpoint: %v", err)
	}
	if failures.Load() != 1 {
		t.Fatalf("%d injected failures, want 1", failures.Load())
	}
	if want := []string{filepath.Join(ckpt, "epoch-1.plug.gguf"), filepath.Join(ckpt, "epoch-3.plug.gguf")}; fmt.Sprint(res.Checkpoints) != fmt.Sprint(want) {
		t.Fatalf("checkpoints %v, want %v", res.Checkpoints, want)
	}
	if len(res.CheckpointErrors) != 1 || !strings.Contains(res.CheckpointErrors[0], "epoch-2.plug.gguf.opt") || strings.Contains(res.CheckpointErrors[0], ".tmp-") {
		t.Fatalf("checkpoint errors %v", res.CheckpointErrors)
	}
	joined := strings.Join(log, "\n")
	if !strings.Contains(joined, "warning: checkpoint") || !strings.Contains(joined, "epoch-1.plug.gguf") || !strings.Contains(joined, "no space") {
		t.Fatalf("no warning naming the failure and the last good checkpoint:\n%s", joined)
	}
	entries, _ := os.ReadDir(ckpt)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "[epoch-1.plug.gguf epoch-1.plug.gguf.opt epoch-3.plug.gguf epoch-3.plug.gguf.opt]"; fmt.Sprint(names) != want {
		t.Fatalf("checkpoint folder holds %v, want %s (pairs only, no half pair, no temporary file)", names, want)
	}
	if _, err := persona.ReadPlug(out); err != nil {
		t.Fatalf("the final plug: %v", err)
	}
}

// TestFinalWriteFailureKeepsTheWeights: when -o cannot be written at the
// end (its folder vanished, the disk is full), the plug is saved elsewhere
// and the error says where.
func TestFinalWriteFailureKeepsTheWeights(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	t.Setenv("TMPDIR", t.TempDir())

	// The output folder is removed during training.
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	p := clonePlug(plug)
	res, err := Train(context.Background(), path, m, p, trainEx, nil, Options{
		Epochs: 1, Batch: 8, LR: 1e-3, Augment: -1, Threads: 1, Output: filepath.Join(outDir, "x.gguf"),
		Progress: func(Progress) { os.RemoveAll(outDir) },
	})
	if err == nil {
		t.Fatal("no error when the output could not be written")
	}
	if res.Rescued == "" || !strings.Contains(err.Error(), res.Rescued) || filepath.Dir(res.Rescued) != os.TempDir() {
		t.Fatalf("rescued %q, err %v", res.Rescued, err)
	}
	saved, rerr := persona.ReadPlug(res.Rescued)
	if rerr != nil {
		t.Fatalf("the rescued plug: %v", rerr)
	}
	if maxAbs(saved.W2, p.W2) != 0 || saved.Meta["trained"] != "true" {
		t.Fatal("the rescued plug is not the trained one")
	}
	if _, err := os.Stat(res.Rescued + ".opt"); err != nil {
		t.Fatalf("no optimizer state beside the rescued plug: %v", err)
	}

	// A full disk where -o goes: the plug goes beside the checkpoints.
	out := filepath.Join(dir, "full", "x.gguf")
	os.Mkdir(filepath.Dir(out), 0o755)
	failingFS(t, func(dst string) bool { return filepath.Dir(dst) == filepath.Dir(out) })
	ckpt := filepath.Join(dir, "ckpt2")
	res, err = Train(context.Background(), path, m, clonePlug(plug), trainEx, nil, Options{
		Epochs: 1, Batch: 8, LR: 1e-3, Augment: -1, Threads: 1, Output: out, CheckpointDir: ckpt,
	})
	if err == nil || !errors.Is(err, syscall.ENOSPC) || filepath.Dir(res.Rescued) != ckpt || !strings.Contains(err.Error(), res.Rescued) {
		t.Fatalf("rescued %q, err %v", res.Rescued, err)
	}
	if _, err := persona.ReadPlug(res.Rescued); err != nil {
		t.Fatalf("the rescued plug: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("the failed write left %v behind", entries)
	}
}

// TestResumeRefusesMismatchedPair: a plug and a .opt from different
// checkpoints do not resume.
func TestResumeRefusesMismatchedPair(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	ckpt := filepath.Join(dir, "ckpt")
	o := Options{Epochs: 2, Batch: 8, LR: 1e-3, Augment: -1, Threads: 1, CheckpointDir: ckpt, Output: filepath.Join(dir, "a.gguf")}
	res, err := Train(context.Background(), path, m, clonePlug(plug), trainEx, nil, o)
	if err != nil || len(res.Checkpoints) != 2 {
		t.Fatalf("err %v checkpoints %v", err, res.Checkpoints)
	}
	e1, e2 := res.Checkpoints[0], res.Checkpoints[1]
	copyFile := func(dst, src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resume := func(plugPath string) error {
		p, err := persona.ReadPlug(plugPath)
		if err != nil {
			t.Fatal(err)
		}
		or := o
		or.CheckpointDir, or.Resume, or.Output = "", plugPath, filepath.Join(dir, "resumed.gguf")
		_, err = Train(context.Background(), path, m, p, trainEx, nil, or)
		return err
	}
	// The matching pair resumes.
	if err := resume(e1); err != nil {
		t.Fatalf("resume from a matching pair: %v", err)
	}
	// Epoch 1's plug with epoch 2's state.
	mixed := filepath.Join(dir, "mixed.plug.gguf")
	copyFile(mixed, e1)
	copyFile(mixed+".opt", e2+".opt")
	if err := resume(mixed); err == nil || !strings.Contains(err.Error(), "different checkpoints") {
		t.Fatalf("resumed from epoch 1's plug and epoch 2's optimizer state: %v", err)
	}
	// Same step, other weights.
	p, _ := persona.ReadPlug(e1)
	p.W2[0] += 0.5
	edited := filepath.Join(dir, "edited.plug.gguf")
	if err := p.WriteFile(edited); err != nil {
		t.Fatal(err)
	}
	copyFile(edited+".opt", e1+".opt")
	if err := resume(edited); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("resumed from a plug whose weights are not the state's: %v", err)
	}
}

// TestRescuePairNeverReplaces: written as a rescue (CommitNew), a pair
// never replaces a file at either of its names and leaves no half pair.
func TestRescuePairNeverReplaces(t *testing.T) {
	plug, err := persona.NewPlug(4, 8, 1, persona.PlugOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, taken := range []string{"", ".opt"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "x.rescued.gguf")
		if err := os.WriteFile(path+taken, []byte("keep"), 0o666); err != nil {
			t.Fatal(err)
		}
		err := writePair(path, plug, optState{Step: 1}, (*atomicfile.Staged).CommitNew)
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("a rescue over %s: %v, want an error wrapping fs.ErrExist", path+taken, err)
		}
		if b, _ := os.ReadFile(path + taken); string(b) != "keep" {
			t.Fatalf("%s was replaced", path+taken)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("the refused rescue left %v", entries)
		}
	}
	path := filepath.Join(t.TempDir(), "free.gguf")
	if err := writePair(path, plug, optState{Step: 1}, (*atomicfile.Staged).CommitNew); err != nil {
		t.Fatalf("a rescue to a free name: %v", err)
	}
}
