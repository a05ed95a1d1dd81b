// Package traingraph is Persona-Plug's training graph: the plug-in's
// forward (projector, input-aware aggregation, instruction rows) feeding a
// frozen decoder (the families of Archs: llama, qwen2, qwen3, gemma2,
// gemma3, phi3) built from the GGUF weights with ggml's public API, a masked next-token cross-entropy, and ggml's automatic
// differentiation for the gradients of the plug-in's parameters
// (graph.c). It is model logic, not binding: package train drives it
// (batches, AdamW, checkpoints) and package cgo stays a thin layer over
// llama.cpp. Parity with llama.cpp's own forward and with the plug-in's
// kernels is tested in package train.
package traingraph

/*
#cgo CPPFLAGS: -I${SRCDIR}/../third_party/ggml/include
#cgo CFLAGS: -std=c11
#cgo linux LDFLAGS: -lm
#if !__has_include("ggml.h")
#error "ggml.h not found: run 'make deps' (it links third_party/llama.cpp and third_party/ggml into the Go module cache)"
#endif
#include <stdlib.h>
#include "graph.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	binding "github.com/pplug/pplug/cgo" // initialises ggml and links it
)

// Config is pp_train_cfg (see graph.h).
type Config struct {
	Batch, Tokens, Items, Targets int
	DEnc, NInstr, Threads         int
	NPersona                      int // persona rows R (0 reads as 1)
	Scale, Tau                    float32
	Adapter, TrainTau             bool
	// EOSBias adds a learned bias EOSBiasScale * theta to the EOS logit
	// (input InEOSVec holds the one-hot, parameter EOSBias theta).
	EOSBias      bool
	EOSBiasScale float32
	// Devices are ggml device names (llama.Devices; their backends loaded)
	// the graph runs on, with the CPU last for the ops they lack; none: the
	// CPU alone. GPULayers is the number of decoder layers whose weights
	// go to them, as llama.cpp's -ngl (< 0: all).
	Devices   []string
	GPULayers int
}

// Input is one of the graph's inputs (enum pp_train_input), filled by
// the caller before each Compute.
type Input int

// The inputs; graph.h gives their shapes.
const (
	InTokens  Input = C.PP_IN_TOKENS
	InTokMask Input = C.PP_IN_TOKMASK
	InPos     Input = C.PP_IN_POS
	InKQMask  Input = C.PP_IN_KQMASK
	InHist    Input = C.PP_IN_HIST
	InHMask   Input = C.PP_IN_HMASK
	InQuery   Input = C.PP_IN_QUERY
	InSelI    Input = C.PP_IN_SEL_I
	InSelP    Input = C.PP_IN_SEL_P
	InTgtPos  Input = C.PP_IN_TGT_POS
	InLabels  Input = C.PP_IN_LABELS
	InLScale  Input = C.PP_IN_LSCALE
	InEOSVec  Input = C.PP_IN_EOSVEC
	nInputs   Input = C.PP_IN_COUNT
)

var inputNames = [...]string{InTokens: "tokens", InTokMask: "token_mask", InPos: "positions", InKQMask: "kq_mask",
	InHist: "history", InHMask: "history_mask", InQuery: "query", InSelI: "select_instruction", InSelP: "select_persona",
	InTgtPos: "target_positions", InLabels: "labels", InLScale: "loss_scale", InEOSVec: "eos_one_hot"}

func (i Input) String() string {
	if i >= 0 && i < nInputs {
		return inputNames[i]
	}
	return fmt.Sprintf("Input(%d)", int(i))
}

// Param is one of the graph's trainable parameters (enum pp_train_param).
// The plug's tensors have the names of persona.PlugParams (a test keeps
// the two lists equal); LogTau is the aggregator's learnt temperature.
type Param int

// The parameters; graph.h gives their shapes.
const (
	W1      Param = C.PP_P_W1
	B1      Param = C.PP_P_B1
	W2      Param = C.PP_P_W2
	B2      Param = C.PP_P_B2
	Instr   Param = C.PP_P_INSTR
	AdaptW  Param = C.PP_P_ADAPT_W
	AdaptB  Param = C.PP_P_ADAPT_B
	LogTau  Param = C.PP_P_LOGTAU
	EOSBias Param = C.PP_P_EOS_BIAS
	NParams Param = C.PP_P_COUNT
)

var paramNames = [...]string{W1: "proj.w1", B1: "proj.b1", W2: "proj.w2", B2: "proj.b2", Instr: "instruction",
	AdaptW: "query_adapter.w", AdaptB: "query_adapter.b", LogTau: "log_tau", EOSBias: "eos_bias"}

// String is the parameter's tensor name in plug files ("log_tau" for the
// temperature and "eos_bias" for the EOS logit bias, which plugs keep as
// pplug.tau and pplug.eos_bias).
func (p Param) String() string {
	if p >= 0 && p < NParams {
		return paramNames[p]
	}
	return fmt.Sprintf("Param(%d)", int(p))
}

// ParamByName is the parameter with a plug tensor's name.
func ParamByName(name string) (Param, bool) {
	for p, n := range paramNames {
		if n == name {
			return Param(p), true
		}
	}
	return 0, false
}

// Trainer is a pp_train: a frozen decoder and the plug-in's training graph.
type Trainer struct {
	c   *C.pp_train
	cfg Config
}

// NewTrainer loads the model and builds the graph.
func NewTrainer(modelPath string, cfg Config) (*Trainer, error) {
	binding.Init()
	cpath := C.CString(modelPath)
	defer C.free(unsafe.Pointer(cpath))
	cc := C.pp_train_cfg{
		n_batch: C.int32_t(cfg.Batch), n_tokens: C.int32_t(cfg.Tokens), n_items: C.int32_t(cfg.Items),
		n_targets: C.int32_t(cfg.Targets), d_enc: C.int32_t(cfg.DEnc), n_instr: C.int32_t(cfg.NInstr),
		n_threads: C.int32_t(cfg.Threads), scale: C.float(cfg.Scale), tau: C.float(cfg.Tau),
		adapter: C.bool(cfg.Adapter), train_tau: C.bool(cfg.TrainTau), n_persona: C.int32_t(cfg.NPersona),
		eos_bias: C.bool(cfg.EOSBias), eos_bias_scale: C.float(cfg.EOSBiasScale),
	}
	if len(cfg.Devices) > 0 {
		for _, d := range cfg.Devices {
			if d == "" || strings.Contains(d, ",") {
				return nil, fmt.Errorf("device name %q: give ggml device names such as Vulkan0", d)
			}
		}
		cdev := C.CString(strings.Join(cfg.Devices, ","))
		defer C.free(unsafe.Pointer(cdev))
		cc.devices = cdev
	}
	cc.n_gpu_layers = C.int32_t(cfg.GPULayers)
	var errbuf [512]C.char
	held := binding.LockDevices() // see cgo/devicelock.go
	t := C.pp_train_new(cpath, &cc, &errbuf[0], C.int32_t(len(errbuf)))
	binding.UnlockDevices(held)
	if t == nil {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return &Trainer{c: t, cfg: cfg}, nil
}

// Archs lists the architectures the training graph builds.
func Archs() string {
	var buf [256]C.char
	C.pp_train_archs(&buf[0], C.int32_t(len(buf)))
	return C.GoString(&buf[0])
}

// CheckModel reads only the metadata of the GGUF model at path and reports
// whether the training graph supports it (architecture, heads, rope
// scaling): a command calls it before any work.
func CheckModel(path string) error {
	binding.Init()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [512]C.char
	if C.pp_train_check(cpath, &errbuf[0], C.int32_t(len(errbuf))) != 0 {
		return errors.New(C.GoString(&errbuf[0]))
	}
	return nil
}

// Free releases everything.
func (t *Trainer) Free() {
	defer binding.UnlockDevices(binding.LockDevices())
	if t.c != nil {
		C.pp_train_free(t.c)
		t.c = nil
	}
}

func (t *Trainer) NEmbd() int  { return int(C.pp_train_n_embd(t.c)) }
func (t *Trainer) NVocab() int { return int(C.pp_train_n_vocab(t.c)) }

// InputF32 is a view of a float input; nil when absent.
func (t *Trainer) InputF32(which Input) []float32 { return inputView[float32](t, which) }

// InputI32 is a view of an integer input.
func (t *Trainer) InputI32(which Input) []int32 { return inputView[int32](t, which) }

func inputView[T float32 | int32](t *Trainer, which Input) []T {
	if which < 0 || which >= nInputs {
		return nil
	}
	var n C.int64_t
	p := C.pp_train_input(t.c, C.int32_t(which), &n)
	return view[T](p, n)
}

// Param is a view of a parameter's values; nil when the config has none.
func (t *Trainer) Param(which Param) []float32 {
	if which < 0 || which >= NParams {
		return nil
	}
	var n C.int64_t
	p := C.pp_train_param(t.c, C.int32_t(which), &n)
	return view[float32](unsafe.Pointer(p), n)
}

// Grad is a view of a parameter's gradient after Compute(true).
func (t *Trainer) Grad(which Param) []float32 {
	if which < 0 || which >= NParams {
		return nil
	}
	var n C.int64_t
	p := C.pp_train_grad(t.c, C.int32_t(which), &n)
	return view[float32](unsafe.Pointer(p), n)
}

// view is the n values of type T at p in C memory; nil when p is.
func view[T float32 | int32](p unsafe.Pointer, n C.int64_t) []T {
	if p == nil {
		return nil
	}
	return unsafe.Slice((*T)(p), int(n))
}

// Compute runs the graph forward (and backward) and returns the loss.
func (t *Trainer) Compute(backward bool) (float32, error) {
	k := &C.pp_train_task{t: t.c, backward: C.bool(backward)}
	t.run(C.pp_train_compute_task_run, k, nil)
	if k.rc != 0 {
		return 0, errors.New(C.GoString(C.pp_train_error(t.c)))
	}
	return float32(k.loss), nil
}

// run runs the task k (fn) on the compute thread (binding.RunTask), with
// k and out pinned for it, holding the device lock.
func (t *Trainer) run(fn unsafe.Pointer, k *C.pp_train_task, out []float32) {
	defer binding.UnlockDevices(binding.LockDevices())
	var pin runtime.Pinner
	pin.Pin(k)
	if len(out) > 0 {
		pin.Pin(&out[0])
	}
	binding.RunTask(fn, unsafe.Pointer(k), t.cfg.Threads)
	pin.Unpin()
}

// Rows is a view of the persona rows [B][R][n_embd] of the last Compute.
func (t *Trainer) Rows(batch int) []float32 {
	r := max(1, t.cfg.NPersona)
	return unsafe.Slice((*float32)(unsafe.Pointer(C.pp_train_rows(t.c))), batch*r*t.NEmbd())
}

// Logits computes the logits of every position [B][T][n_vocab].
func (t *Trainer) Logits(batch, tokens int) ([]float32, error) {
	out := make([]float32, batch*tokens*t.NVocab())
	if len(out) == 0 {
		return nil, fmt.Errorf("empty logits shape")
	}
	k := &C.pp_train_task{t: t.c, out: (*C.float)(unsafe.Pointer(&out[0])), n: C.int64_t(len(out))}
	t.run(C.pp_train_logits_task_run, k, out)
	if k.rc != 0 {
		return nil, errors.New(C.GoString(C.pp_train_error(t.c)))
	}
	return out, nil
}

// OpPlacement is where ggml's scheduler put one op of the training graph
// (forward and backward): Nodes of them, OnCPU on the CPU, Unsupported
// that no device of Config.Devices can run (the CPU fallbacks; the other
// CPU nodes follow their inputs there, as the token embeddings).
type OpPlacement struct {
	Op                        string
	Nodes, OnCPU, Unsupported int
}

// Placement lists the training graph's ops (view ops left out) in order
// of first appearance.
func (t *Trainer) Placement() []OpPlacement {
	var out []OpPlacement
	var buf [64]C.char
	for i := 0; ; i++ {
		var nodes, cpu, uns C.int32_t
		if C.pp_train_placement(t.c, C.int32_t(i), &buf[0], C.int32_t(len(buf)), &nodes, &cpu, &uns) != 0 {
			return out
		}
		out = append(out, OpPlacement{Op: C.GoString(&buf[0]), Nodes: int(nodes), OnCPU: int(cpu), Unsupported: int(uns)})
	}
}

// Splits is the number of graph splits of the training graph: runs of
// nodes on one backend, each a copy of its inputs between backends.
func (t *Trainer) Splits() int { return int(C.pp_train_n_splits(t.c)) }
