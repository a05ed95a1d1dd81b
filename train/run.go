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
	var res Result
	if err := o.Validate(); err != nil {
		return res, err
	}
	o.defaults()
	if len(trainEx) == 0 {
		return res, errors.New("no training examples")
	}
	// Every file the run writes is checked before the first step, so that
	// a bad path does not cost the training.
	if err := CheckOutputs(o); err != nil {
		return res, err
	}
	aug := Augment(trainEx, max(0, o.Augment), rand.New(rand.NewPCG(o.Seed, 0xa06)))
	res.Examples = len(aug)
	// A batch larger than the data holds all of it: the graph needs no more rows.
	shape, err := ShapeFor(plug, min(o.Batch, len(aug)), aug, devEx)
	if err != nil {
		return res, err
	}
	res.Shape = shape
	g, err := NewGraphWith(modelPath, m, plug, shape, GraphOptions{Threads: o.Threads, TrainTau: o.TrainTau, EOSBias: o.EOSBias})
	if err != nil {
		return res, err
	}
	defer g.Close()
	opt := newAdamW(g)
	stepsPerEpoch := (len(aug)-1)/o.Batch + 1
	if o.Epochs > math.MaxInt32/stepsPerEpoch {
		return res, fmt.Errorf("%d epochs of %d steps are more steps than can be counted (%d at most)", o.Epochs, stepsPerEpoch, math.MaxInt32)
	}
	total := stepsPerEpoch * o.Epochs
	warm := int(math.Ceil(o.Warmup * float64(total)))
	lrAt := func(step int) float64 { // step counts from 1
		if warm > 0 && step <= warm {
			return o.LR * float64(step) / float64(warm)
		}
		return o.LR * math.Max(0, float64(total-step)/float64(max(1, total-warm)))
	}

	startEpoch, startBatch := 0, 0
	if o.Resume != "" {
		st, err := readOptState(o.Resume+".opt", g)
		if err != nil {
			return res, fmt.Errorf("resume from %s: %w", o.Resume, err)
		}
		if err := st.matches(plug); err != nil {
			return res, fmt.Errorf("resume from %s: %w: resume from a plug and the .opt written with it", o.Resume, err)
		}
		opt.load(st)
		startEpoch, startBatch = st.Epoch, st.Batch
		res.ResumedAtSeq = st.Step
		if st.Seed != o.Seed {
			return res, fmt.Errorf("resume: the checkpoint was trained with --seed %d, not %d", st.Seed, o.Seed)
		}
		if startEpoch > o.Epochs || startBatch >= stepsPerEpoch && startBatch > 0 {
			return res, fmt.Errorf("resume from %s: the checkpoint stands at epoch %d batch %d, beyond %d epochs of %d steps (other data or --batch than it was trained with?)",
				o.Resume, startEpoch, startBatch, o.Epochs, stepsPerEpoch)
		}
	}

	save := func(path string, epoch, batch int) error {
		g.StorePlug()
		plug.Meta["trained"] = "true"
		plug.Meta["steps"] = strconv.Itoa(opt.step)
		plug.Meta["epochs_done"] = fmt.Sprintf("%.3f", float64(epoch)+float64(batch)/float64(stepsPerEpoch))
		plug.Meta["lr"] = strconv.FormatFloat(o.LR, 'g', -1, 64)
		plug.Meta["batch"] = strconv.Itoa(o.Batch)
		plug.Meta["seed"] = strconv.FormatUint(o.Seed, 10)
		plug.Meta["saved"] = time.Now().UTC().Format(time.RFC3339)
		if n := len(res.TrainLoss); n > 0 {
			plug.Meta["train_loss"] = fmt.Sprintf("%.5f", res.TrainLoss[n-1])
		}
		if n := len(res.DevLoss); n > 0 {
			plug.Meta["dev_loss"] = fmt.Sprintf("%.5f", res.DevLoss[n-1])
		}
		st := opt.state(epoch, batch, o.Seed)
		st.PlugSum = plug.Checksum()
		return writePair(path, plug, st)
	}
	// saveOutput writes the plug to o.Output or, when that fails, to a
	// rescue file beside the checkpoints or in the temporary folder, so
	// that the trained weights are never lost to a bad path or a full disk.
	saveOutput := func(epoch, batch int) error {
		err := save(o.Output, epoch, batch)
		if err == nil {
			res.Output = o.Output
			return nil
		}
		var tried []string
		for _, dir := range rescueDirs(o) {
			rp := filepath.Join(dir, rescueName(o.Output))
			if rerr := save(rp, epoch, batch); rerr != nil {
				tried = append(tried, fmt.Sprintf("%s (%v)", rp, rerr))
				continue
			}
			res.Output, res.Rescued = rp, rp
			return fmt.Errorf("write the plug to %s: %w; the trained plug was saved to %s instead (with its optimizer state %s.opt): move it where you want it, or continue with --resume %s",
				o.Output, err, rp, rp, rp)
		}
		return fmt.Errorf("write the plug to %s: %w; saving it elsewhere failed too: %s", o.Output, err, strings.Join(tried, "; "))
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		} else {
			slog.Warn(fmt.Sprintf(format, a...))
		}
	}

	t0 := time.Now()
	var stepTime time.Duration
	for epoch := startEpoch; epoch < o.Epochs; epoch++ {
		perm := rand.New(rand.NewPCG(o.Seed, uint64(epoch)+1)).Perm(len(aug))
		var sum float64
		var n int
		first := 0
		if epoch == startEpoch {
			first = startBatch
		}
		for bi := first; bi < stepsPerEpoch; bi++ {
			if err := ctx.Err(); err != nil {
				res.Interrupted = true
				res.Duration = time.Since(t0)
				res.Steps = opt.step
				if serr := saveOutput(epoch, bi); serr != nil {
					return res, fmt.Errorf("save after interrupt: %w", errors.Join(serr, err))
				}
				return res, err
			}
			ts := time.Now()
			batch := make([]Example, 0, min(o.Batch, len(perm)))
			for _, i := range perm[bi*o.Batch : min(len(perm), (bi+1)*o.Batch)] {
				batch = append(batch, aug[i])
			}
			if _, err := g.Fill(batch); err != nil {
				return res, err
			}
			loss, err := g.Backward()
			if err != nil {
				return res, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return res, fmt.Errorf("step %d: the loss is %v (lower the learning rate)", opt.step+1, loss)
			}
			lr := lrAt(opt.step + 1)
			opt.update(lr, o)
			dt := time.Since(ts)
			stepTime += dt
			sum += loss
			n++
			if o.Progress != nil {
				o.Progress(Progress{
					Epoch: epoch + 1, Epochs: o.Epochs, Step: opt.step, Steps: total, Loss: loss, AvgLoss: sum / float64(n),
					LR: lr, StepTime: dt, TokensPerSec: float64(shape.Batch*shape.Tokens) / dt.Seconds(),
				})
			}
		}
		res.TrainLoss = append(res.TrainLoss, sum/float64(max(1, n)))
		line := fmt.Sprintf("epoch %d/%d: train loss %.4f", epoch+1, o.Epochs, res.TrainLoss[len(res.TrainLoss)-1])
		if len(devEx) > 0 {
			dl, err := EvalLoss(g, devEx)
			if err != nil {
				return res, err
			}
			res.DevLoss = append(res.DevLoss, dl)
			line += fmt.Sprintf(", dev loss %.4f", dl)
		}
		if o.CheckpointDir != "" {
			p := filepath.Join(o.CheckpointDir, fmt.Sprintf("epoch-%d.plug.gguf", epoch+1))
			err := os.MkdirAll(o.CheckpointDir, 0o755)
			if err == nil {
				err = save(p, epoch+1, 0)
			}
			if err != nil {
				// A checkpoint is a convenience: training goes on without it.
				last := "none was written"
				if n := len(res.Checkpoints); n > 0 {
					last = "the last good one is " + res.Checkpoints[n-1]
				}
				res.CheckpointErrors = append(res.CheckpointErrors, fmt.Sprintf("%s: %v", p, err))
				logf("warning: checkpoint %s not written (%v); %s; training goes on", p, err, last)
			} else {
				res.Checkpoints = append(res.Checkpoints, p)
				line += ", checkpoint " + p
			}
		}
		if o.Log != nil {
			o.Log(line)
		}
	}
	res.Duration = time.Since(t0)
	res.Steps = opt.step
	res.Epochs = o.Epochs
	if steps := opt.step - res.ResumedAtSeq; steps > 0 {
		res.MeanStep = stepTime / time.Duration(steps)
	}
	if err := saveOutput(o.Epochs, 0); err != nil {
		return res, err
	}
	return res, nil
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
		if err := os.MkdirAll(o.CheckpointDir, 0o755); err != nil {
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
