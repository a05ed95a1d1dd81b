package train

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/traingraph"
)

// Options configure Train. Zero values take the paper's defaults where it
// gives one (PAPER.md: AdamW, lr 1e-4, weight decay 1e-4, 5 % warm-up,
// 2 epochs, history dropout copies).
type Options struct {
	Epochs      int     // default 2
	Batch       int     // examples per step (default 8; the paper: 64)
	LR          float64 // peak learning rate (default 1e-4)
	WeightDecay float64 // decoupled, AdamW (default 1e-4; < 0: none)
	Warmup      float64 // fraction of steps with a linear warm-up (default 0.05; < 0: none), then linear decay to 0
	Beta1       float64 // default 0.9
	Beta2       float64 // default 0.999
	Eps         float64 // default 1e-8
	MaxGradNorm float64 // clip the global gradient norm (default 1; < 0 disables)
	Augment     int     // history-dropout copies per example (default 10; < 0 disables)
	Seed        uint64
	Threads     int
	TrainTau    bool // learn the aggregator temperature too
	// EOSBias learns a bias on the LLM's EOS logit (persona.Plug.EOSBias);
	// a plug that has one keeps learning it.
	EOSBias bool
	// Devices names the ggml devices the training graph runs on (llama.cpp's
	// -dev: llama.Devices after llama.LoadBackends; empty or "none": the CPU
	// alone), with the CPU last for the ops they lack. GPULayers is how many
	// of the frozen decoder's layers go to them (llama.cpp's -ngl; < 0: all);
	// the plug's parameters go with the first offloaded layer. A checkpoint
	// resumes on any device: the optimizer state is kept in host memory.
	Devices   []string
	GPULayers int
	// Output is the plug file written at the end (and after Ctrl-C).
	Output string
	// CheckpointDir, when set, receives a plug and optimizer state after
	// every epoch (epoch-N.plug.gguf and .opt).
	CheckpointDir string
	// Resume continues from a checkpoint written by this package: the plug
	// file whose optimizer state sits beside it (FILE.opt).
	Resume string
	// Progress, when set, is called after every step.
	Progress func(p Progress)
	// Log, when set, receives one line per epoch.
	Log func(line string)
}

// MaxAugment bounds Options.Augment: every copy is one more example per
// epoch, held in memory, and more copies add no new data.
const MaxAugment = 1000

// Validate refuses options Train cannot run with. Zero values stand for
// the defaults and negative WeightDecay, Warmup, MaxGradNorm and Augment
// switch those off, as documented on Options; anything else out of range
// is an error naming the option.
func (o Options) Validate() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case o.Epochs < 0:
		return fmt.Errorf("epochs %d: give 1 or more", o.Epochs)
	case o.Batch < 0:
		return fmt.Errorf("batch %d: give 1 or more examples per step", o.Batch)
	case o.LR < 0 || !finite(o.LR):
		return fmt.Errorf("learning rate %v: give a positive number", o.LR)
	case !finite(o.WeightDecay):
		return fmt.Errorf("weight decay %v: give a number (negative: none)", o.WeightDecay)
	case !finite(o.Warmup) || o.Warmup > 1:
		return fmt.Errorf("warm-up %v: give a fraction of the steps between 0 and 1 (negative: none)", o.Warmup)
	case !finite(o.MaxGradNorm):
		return fmt.Errorf("max gradient norm %v: give a number (negative: no clipping)", o.MaxGradNorm)
	case o.Beta1 < 0 || o.Beta1 >= 1 || math.IsNaN(o.Beta1), o.Beta2 < 0 || o.Beta2 >= 1 || math.IsNaN(o.Beta2):
		return fmt.Errorf("AdamW betas %v, %v: give numbers in [0, 1)", o.Beta1, o.Beta2)
	case o.Eps < 0 || !finite(o.Eps):
		return fmt.Errorf("AdamW epsilon %v: give a positive number", o.Eps)
	case o.Augment > MaxAugment:
		return fmt.Errorf("augment %d: at most %d history-dropout copies per example", o.Augment, MaxAugment)
	case o.Threads < 0:
		return fmt.Errorf("threads %d must not be negative", o.Threads)
	}
	d := o
	d.defaults()
	if d.LR*d.WeightDecay >= 1 {
		return fmt.Errorf("weight decay %v times learning rate %v is %v: AdamW would scale the weights by %v each step; give a weight decay below %v",
			d.WeightDecay, d.LR, d.LR*d.WeightDecay, 1-d.LR*d.WeightDecay, 1/d.LR)
	}
	return nil
}

func (o *Options) defaults() {
	if o.Epochs <= 0 {
		o.Epochs = 2
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.LR <= 0 {
		o.LR = 1e-4
	}
	switch {
	case o.WeightDecay == 0:
		o.WeightDecay = 1e-4
	case o.WeightDecay < 0:
		o.WeightDecay = 0
	}
	switch {
	case o.Warmup == 0:
		o.Warmup = 0.05
	case o.Warmup < 0:
		o.Warmup = 0
	}
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	if o.MaxGradNorm == 0 {
		o.MaxGradNorm = 1
	}
	if o.Augment == 0 {
		o.Augment = 10
	}
}

// Progress is reported after each step.
type Progress struct {
	Epoch, Epochs int
	Step, Steps   int
	Loss          float64 // this step's mean target NLL
	AvgLoss       float64 // running average over the epoch
	LR            float64
	TokensPerSec  float64 // graph positions processed per second
	StepTime      time.Duration
}

// Result summarises a run.
type Result struct {
	Steps        int
	Epochs       int
	Examples     int // after augmentation
	Shape        Shape
	TrainLoss    []float64 // mean per epoch
	DevLoss      []float64 // per epoch, when dev examples were given
	Duration     time.Duration
	MeanStep     time.Duration
	Interrupted  bool
	Output       string
	Checkpoints  []string
	ResumedAtSeq int
	// CheckpointErrors lists the checkpoints that could not be written
	// (training went on without them).
	CheckpointErrors []string `json:",omitempty"`
	// Rescued is where the plug went when Output could not be written.
	Rescued string `json:",omitempty"`
}

// Train learns the plug's parameters on the examples, with the model's
// weights frozen, and writes the plug to o.Output. The plug is updated in
// place. A cancelled ctx stops after the current step and saves.
func Train(ctx context.Context, modelPath string, m *llama.Model, plug *persona.Plug, trainEx, devEx []Example, o Options) (Result, error) {
	r, err := newTrainRun(modelPath, m, plug, trainEx, devEx, o)
	if err != nil {
		return r.res, err
	}
	defer r.g.Close()
	startEpoch, startBatch, err := r.resume()
	if err != nil {
		return r.res, err
	}
	r.t0 = time.Now()
	for epoch := startEpoch; epoch < r.o.Epochs; epoch++ {
		first := 0
		if epoch == startEpoch {
			first = startBatch
		}
		if err := r.epoch(ctx, epoch, first); err != nil {
			return r.res, err
		}
	}
	r.res.Duration = time.Since(r.t0)
	r.res.Steps = r.opt.step
	r.res.Epochs = r.o.Epochs
	if steps := r.opt.step - r.res.ResumedAtSeq; steps > 0 {
		r.res.MeanStep = r.stepTime / time.Duration(steps)
	}
	return r.res, r.saveOutput(r.o.Epochs, 0)
}

// trainRun is one call of Train.
type trainRun struct {
	o     Options
	plug  *persona.Plug
	g     *Graph
	opt   *adamW
	aug   []Example // the training examples, augmented
	devEx []Example
	shape Shape
	res   Result

	stepsPerEpoch, total, warm int // the schedule
	t0                         time.Time
	stepTime                   time.Duration
}

// newTrainRun checks the options and every output path, augments the
// data, and builds the graph, the optimizer and the schedule.
func newTrainRun(modelPath string, m *llama.Model, plug *persona.Plug, trainEx, devEx []Example, o Options) (*trainRun, error) {
	r := &trainRun{o: o, plug: plug, devEx: devEx}
	if err := o.Validate(); err != nil {
		return r, err
	}
	r.o.defaults()
	o = r.o
	if len(trainEx) == 0 {
		return r, errors.New("no training examples")
	}
	// Every file the run writes is checked before the first step, so that
	// a bad path does not cost the training.
	if err := CheckOutputs(o); err != nil {
		return r, err
	}
	aug, err := Augment(trainEx, max(0, o.Augment), rand.New(rand.NewPCG(o.Seed, 0xa06)))
	if err != nil {
		return r, err
	}
	r.aug = aug
	r.res.Examples = len(r.aug)
	// A batch larger than the data holds all of it: the graph needs no more rows.
	shape, err := ShapeFor(plug, min(o.Batch, len(r.aug)), r.aug, devEx)
	if err != nil {
		return r, err
	}
	r.shape, r.res.Shape = shape, shape
	r.stepsPerEpoch = (len(r.aug)-1)/o.Batch + 1
	if o.Epochs > math.MaxInt32/r.stepsPerEpoch {
		return r, fmt.Errorf("%d epochs of %d steps are more steps than can be counted (%d at most)", o.Epochs, r.stepsPerEpoch, math.MaxInt32)
	}
	r.total = r.stepsPerEpoch * o.Epochs
	r.warm = int(math.Ceil(o.Warmup * float64(r.total)))
	devs, err := trainDevices(o.Devices)
	if err != nil {
		return r, err
	}
	if r.g, err = NewGraphWith(modelPath, m, plug, shape, GraphOptions{Threads: o.Threads, TrainTau: o.TrainTau, EOSBias: o.EOSBias,
		Devices: devs, GPULayers: o.GPULayers}); err != nil {
		return r, err
	}
	if len(devs) > 0 {
		logPlacement(r.g, devs)
	}
	r.opt = newAdamW(r.g)
	return r, nil
}

// lrAt is the learning rate of a step (counted from 1): a linear warm-up,
// then a linear decay to zero.
func (r *trainRun) lrAt(step int) float64 {
	if r.warm > 0 && step <= r.warm {
		return r.o.LR * float64(step) / float64(r.warm)
	}
	return r.o.LR * math.Max(0, float64(r.total-step)/float64(max(1, r.total-r.warm)))
}

// resume loads the optimizer state of --resume and returns where training
// goes on.
func (r *trainRun) resume() (epoch, batch int, err error) {
	o := r.o
	if o.Resume == "" {
		return 0, 0, nil
	}
	st, err := readOptState(o.Resume+".opt", r.g)
	if err != nil {
		return 0, 0, fmt.Errorf("resume from %s: %w", o.Resume, err)
	}
	if err := st.matches(r.plug); err != nil {
		return 0, 0, fmt.Errorf("resume from %s: %w: resume from a plug and the .opt written with it", o.Resume, err)
	}
	r.opt.load(st)
	r.res.ResumedAtSeq = st.Step
	if st.Seed != o.Seed {
		return 0, 0, fmt.Errorf("resume: the checkpoint was trained with --seed %d, not %d", st.Seed, o.Seed)
	}
	if st.Epoch > o.Epochs || st.Batch >= r.stepsPerEpoch && st.Batch > 0 {
		return 0, 0, fmt.Errorf("resume from %s: the checkpoint stands at epoch %d batch %d, beyond %d epochs of %d steps (other data or --batch than it was trained with?)",
			o.Resume, st.Epoch, st.Batch, o.Epochs, r.stepsPerEpoch)
	}
	return st.Epoch, st.Batch, nil
}

// save writes the plug and its optimizer state as a pair to path,
// replacing the pair there.
func (r *trainRun) save(path string, epoch, batch int) error {
	return r.saveWith(path, epoch, batch, (*atomicfile.Staged).Commit)
}

// saveWith is save with place putting each file of the pair in place (see
// writePair).
func (r *trainRun) saveWith(path string, epoch, batch int, place func(*atomicfile.Staged) error) error {
	o, plug := r.o, r.plug
	r.g.StorePlug()
	plug.Meta["trained"] = "true"
	plug.Meta["steps"] = strconv.Itoa(r.opt.step)
	plug.Meta["epochs_done"] = fmt.Sprintf("%.3f", float64(epoch)+float64(batch)/float64(r.stepsPerEpoch))
	plug.Meta["lr"] = strconv.FormatFloat(o.LR, 'g', -1, 64)
	plug.Meta["batch"] = strconv.Itoa(o.Batch)
	plug.Meta["seed"] = strconv.FormatUint(o.Seed, 10)
	plug.Meta["saved"] = time.Now().UTC().Format(time.RFC3339)
	if n := len(r.res.TrainLoss); n > 0 {
		plug.Meta["train_loss"] = fmt.Sprintf("%.5f", r.res.TrainLoss[n-1])
	}
	if n := len(r.res.DevLoss); n > 0 {
		plug.Meta["dev_loss"] = fmt.Sprintf("%.5f", r.res.DevLoss[n-1])
	}
	st := r.opt.state(epoch, batch, o.Seed)
	st.PlugSum = plug.Checksum()
	return writePair(path, plug, st, place)
}

// saveOutput writes the plug to o.Output or, when that fails, to a rescue
// file beside the checkpoints or in the temporary folder, so that the
// trained weights are never lost to a bad path or a full disk.
func (r *trainRun) saveOutput(epoch, batch int) error {
	o := r.o
	err := r.save(o.Output, epoch, batch)
	if err == nil {
		r.res.Output = o.Output
		return nil
	}
	var tried []string
	for _, dir := range rescueDirs(o) {
		rp := filepath.Join(dir, rescueName(o.Output))
		// A rescue file has a new name and never replaces a file.
		if rerr := r.saveWith(rp, epoch, batch, (*atomicfile.Staged).CommitNew); rerr != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", rp, rerr))
			continue
		}
		r.res.Output, r.res.Rescued = rp, rp
		return fmt.Errorf("write the plug to %s: %w; the trained plug was saved to %s instead (with its optimizer state %s.opt): move it where you want it, or continue with --resume %s",
			o.Output, err, rp, rp, rp)
	}
	return fmt.Errorf("write the plug to %s: %w; saving it elsewhere failed too: %s", o.Output, err, strings.Join(tried, "; "))
}

func (r *trainRun) logf(format string, a ...any) {
	if r.o.Log != nil {
		r.o.Log(fmt.Sprintf(format, a...))
	} else {
		slog.Warn(fmt.Sprintf(format, a...))
	}
}

// epoch trains one pass over the data from batch first on, then scores the
// dev examples and writes the epoch's checkpoint. A cancelled ctx saves
// the plug where training stopped.
func (r *trainRun) epoch(ctx context.Context, epoch, first int) error {
	o := r.o
	perm := rand.New(rand.NewPCG(o.Seed, uint64(epoch)+1)).Perm(len(r.aug))
	var sum float64
	var n int
	for bi := first; bi < r.stepsPerEpoch; bi++ {
		if err := ctx.Err(); err != nil {
			r.res.Interrupted = true
			r.res.Duration = time.Since(r.t0)
			r.res.Steps = r.opt.step
			if serr := r.saveOutput(epoch, bi); serr != nil {
				return fmt.Errorf("save after interrupt: %w", errors.Join(serr, err))
			}
			return err
		}
		batch := make([]Example, 0, min(o.Batch, len(perm)))
		for _, i := range perm[bi*o.Batch : min(len(perm), (bi+1)*o.Batch)] {
			batch = append(batch, r.aug[i])
		}
		loss, err := r.step(batch, epoch, sum, n)
		if err != nil {
			return err
		}
		sum += loss
		n++
	}
	r.res.TrainLoss = append(r.res.TrainLoss, sum/float64(max(1, n)))
	line := fmt.Sprintf("epoch %d/%d: train loss %.4f", epoch+1, o.Epochs, r.res.TrainLoss[len(r.res.TrainLoss)-1])
	if len(r.devEx) > 0 {
		dl, err := EvalLoss(r.g, r.devEx)
		if err != nil {
			return err
		}
		r.res.DevLoss = append(r.res.DevLoss, dl)
		line += fmt.Sprintf(", dev loss %.4f", dl)
	}
	if p := r.checkpoint(epoch); p != "" {
		line += ", checkpoint " + p
	}
	if o.Log != nil {
		o.Log(line)
	}
	return nil
}

// step runs one optimizer step on a batch and reports progress (sum and n
// are the epoch's loss so far).
func (r *trainRun) step(batch []Example, epoch int, sum float64, n int) (float64, error) {
	ts := time.Now()
	if _, err := r.g.Fill(batch); err != nil {
		return 0, err
	}
	loss, err := r.g.Backward()
	if err != nil {
		return 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, fmt.Errorf("step %d: the loss is %v (lower the learning rate)", r.opt.step+1, loss)
	}
	lr := r.lrAt(r.opt.step + 1)
	r.opt.update(lr, r.o)
	dt := time.Since(ts)
	r.stepTime += dt
	if r.o.Progress != nil {
		r.o.Progress(Progress{
			Epoch: epoch + 1, Epochs: r.o.Epochs, Step: r.opt.step, Steps: r.total, Loss: loss, AvgLoss: (sum + loss) / float64(n+1),
			LR: lr, StepTime: dt, TokensPerSec: float64(r.shape.Batch*r.shape.Tokens) / dt.Seconds(),
		})
	}
	return loss, nil
}

// checkpoint writes the checkpoint pair of an epoch and returns its path
// ("" when there is none). A failed write warns and training goes on.
func (r *trainRun) checkpoint(epoch int) string {
	dir := r.o.CheckpointDir
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, fmt.Sprintf("epoch-%d.plug.gguf", epoch+1))
	err := os.MkdirAll(dir, 0o777)
	if err == nil {
		err = r.save(p, epoch+1, 0)
	}
	if err != nil {
		last := "none was written"
		if n := len(r.res.Checkpoints); n > 0 {
			last = "the last good one is " + r.res.Checkpoints[n-1]
		}
		r.res.CheckpointErrors = append(r.res.CheckpointErrors, fmt.Sprintf("%s: %v", p, err))
		r.logf("warning: checkpoint %s not written (%v); %s; training goes on", p, err, last)
		return ""
	}
	r.res.Checkpoints = append(r.res.Checkpoints, p)
	return p
}

// CheckOutputs checks, before any work, that the files Train writes can be
// written: the output plug (and its .opt beside it) and the checkpoint
// folder, which is created if needed.
func CheckOutputs(o Options) error {
	if o.Output == "" {
		return errors.New("no output plug file")
	}
	if err := CheckOutputFile(o.Output); err != nil {
		return err
	}
	if o.CheckpointDir != "" {
		if err := os.MkdirAll(o.CheckpointDir, 0o777); err != nil {
			return fmt.Errorf("checkpoint folder: %w", err)
		}
		if err := probeDir(o.CheckpointDir); err != nil {
			return fmt.Errorf("checkpoint folder %s: %w", o.CheckpointDir, err)
		}
	}
	return nil
}

// CheckOutputFile checks that path can be created or replaced: it is not a
// folder, and its folder exists and takes new files.
func CheckOutputFile(path string) error {
	if path == "" {
		return errors.New("no output file given")
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("output %s is a folder: give a file name (for example %s)", path, filepath.Join(path, "plug.gguf"))
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("output %s: the folder %s does not exist (create it first)", path, dir)
	case err != nil:
		return fmt.Errorf("output %s: %w", path, err)
	case !fi.IsDir():
		return fmt.Errorf("output %s: %s is not a folder", path, dir)
	}
	if err := probeDir(dir); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return nil
}

// probeDir creates and removes a file in dir, as the atomic writes will.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".pplug-probe-*")
	if err != nil {
		return fmt.Errorf("cannot create files in %s: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// rescueDirs are where a plug goes when its output path fails: the
// checkpoint folder, then the temporary folder.
func rescueDirs(o Options) []string {
	var dirs []string
	if o.CheckpointDir != "" {
		dirs = append(dirs, o.CheckpointDir)
	}
	return append(dirs, os.TempDir())
}

// rescueName names a rescued plug after the intended output.
func rescueName(output string) string {
	base := strings.TrimSuffix(filepath.Base(output), ".gguf")
	if base == "" || base == "." || base == string(filepath.Separator) {
		base = "plug"
	}
	return fmt.Sprintf("%s.rescued-%s-%d.gguf", base, time.Now().UTC().Format("20060102T150405"), os.Getpid())
}

// EvalLoss is the token-weighted mean target NLL of the examples under the
// graph's current parameters.
func EvalLoss(g *Graph, ex []Example) (float64, error) {
	var sum float64
	var tokens int
	b := g.Shape().Batch
	for i := 0; i < len(ex); i += b {
		batch := ex[i:min(len(ex), i+b)]
		n, err := g.Fill(batch)
		if err != nil {
			return 0, err
		}
		l, err := g.Forward()
		if err != nil {
			return 0, err
		}
		sum += l * float64(n)
		tokens += n
	}
	return sum / float64(tokens), nil
}

// adamW is AdamW with decoupled weight decay (as torch.optim.AdamW) over
// the graph's parameters, updated in place in the graph's memory.
type adamW struct {
	g    *Graph
	ids  []traingraph.Param
	m, v map[traingraph.Param][]float32
	step int
}

func newAdamW(g *Graph) *adamW {
	a := &adamW{g: g, ids: g.ParamIDs(), m: map[traingraph.Param][]float32{}, v: map[traingraph.Param][]float32{}}
	for _, id := range a.ids {
		n := len(g.Param(id))
		a.m[id], a.v[id] = make([]float32, n), make([]float32, n)
	}
	return a
}

func (a *adamW) update(lr float64, o Options) {
	a.step++
	scale := 1.0
	if o.MaxGradNorm > 0 {
		var ss float64
		for _, id := range a.ids {
			for _, x := range a.g.Grad(id) {
				ss += float64(x) * float64(x)
			}
		}
		if nrm := math.Sqrt(ss); nrm > o.MaxGradNorm {
			scale = o.MaxGradNorm / nrm
		}
	}
	b1, b2 := o.Beta1, o.Beta2
	c1 := 1 - math.Pow(b1, float64(a.step))
	c2 := 1 - math.Pow(b2, float64(a.step))
	decay := float32(1 - lr*o.WeightDecay)
	for _, id := range a.ids {
		p, gr, m, v := a.g.Param(id), a.g.Grad(id), a.m[id], a.v[id]
		for i := range p {
			gi := float64(gr[i]) * scale
			mi := b1*float64(m[i]) + (1-b1)*gi
			vi := b2*float64(v[i]) + (1-b2)*gi*gi
			m[i], v[i] = float32(mi), float32(vi)
			p[i] = p[i]*decay - float32(lr*(mi/c1)/(math.Sqrt(vi/c2)+o.Eps))
		}
	}
}

func (a *adamW) state(epoch, batch int, seed uint64) optState {
	st := optState{Step: a.step, Epoch: epoch, Batch: batch, Seed: seed, M: map[traingraph.Param][]float32{}, V: map[traingraph.Param][]float32{}}
	for _, id := range a.ids {
		st.M[id], st.V[id] = a.m[id], a.v[id]
	}
	return st
}

func (a *adamW) load(st optState) {
	a.step = st.Step
	for _, id := range a.ids {
		copy(a.m[id], st.M[id])
		copy(a.v[id], st.V[id])
	}
}

// trainDevices checks a device list against the devices of the loaded
// backends: "none" or nothing is the CPU alone.
func trainDevices(names []string) ([]string, error) {
	if len(names) == 0 || len(names) == 1 && (names[0] == "none" || names[0] == "") {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "none" {
			return nil, fmt.Errorf("devices %s: none (the CPU alone) cannot be combined with other devices", strings.Join(names, ","))
		}
		if seen[n] {
			return nil, fmt.Errorf("devices %s: %s is listed twice; give each device once", strings.Join(names, ","), n)
		}
		seen[n] = true
	}
	llama.LoadBackends() // once per process: the GPU backends beside the binary
	have := map[string]bool{}
	var avail []string
	for _, d := range llama.Devices() {
		if d.Backend != "CPU" {
			have[d.Name] = true
			avail = append(avail, d.Name)
		}
	}
	for _, n := range names {
		if !have[n] {
			if len(avail) == 0 {
				return nil, fmt.Errorf("device %s: no GPU backend is loaded (build one, e.g. make vulkan); train with device none", n)
			}
			return nil, fmt.Errorf("device %s: not one of the devices %s (or none)", n, strings.Join(avail, ", "))
		}
	}
	return names, nil
}

// logPlacement logs where the scheduler put the training graph: its
// splits and the ops that no device can run (they run on the CPU).
func logPlacement(g *Graph, devs []string) {
	var fallback []string
	for _, p := range g.Placement() {
		if p.Unsupported > 0 {
			fallback = append(fallback, fmt.Sprintf("%s x%d", p.Op, p.Unsupported))
		}
	}
	slog.Info("training graph scheduled", "devices", strings.Join(devs, ","), "splits", g.Splits(),
		"cpu_fallback_ops", strings.Join(fallback, ", "))
}
