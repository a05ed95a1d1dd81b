package cgo

/*
#include <stdlib.h>
#include "train.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// TrainConfig is pp_train_cfg (see train.h).
type TrainConfig struct {
	Batch, Tokens, Items, Targets int
	DEnc, NInstr, Threads         int
	NPersona                      int
	Scale, Tau                    float32
	Adapter, TrainTau             bool
	// EOSBias adds a learned bias EOSBiasScale * theta to the EOS logit
	// (input TrainInEOSVec holds the one-hot, parameter TrainEOSBias theta).
	EOSBias      bool
	EOSBiasScale float32
}

// Training graph inputs (pp_train_input).
const (
	TrainInTokens  = int(C.PP_IN_TOKENS)
	TrainInTokMask = int(C.PP_IN_TOKMASK)
	TrainInPos     = int(C.PP_IN_POS)
	TrainInKQMask  = int(C.PP_IN_KQMASK)
	TrainInHist    = int(C.PP_IN_HIST)
	TrainInHMask   = int(C.PP_IN_HMASK)
	TrainInQuery   = int(C.PP_IN_QUERY)
	TrainInSelI    = int(C.PP_IN_SEL_I)
	TrainInSelP    = int(C.PP_IN_SEL_P)
	TrainInTgtPos  = int(C.PP_IN_TGT_POS)
	TrainInLabels  = int(C.PP_IN_LABELS)
	TrainInLScale  = int(C.PP_IN_LSCALE)
	TrainInEOSVec  = int(C.PP_IN_EOSVEC)
)

// Training graph parameters (pp_train_param).
const (
	TrainW1      = int(C.PP_P_W1)
	TrainB1      = int(C.PP_P_B1)
	TrainW2      = int(C.PP_P_W2)
	TrainB2      = int(C.PP_P_B2)
	TrainInstr   = int(C.PP_P_INSTR)
	TrainAdaptW  = int(C.PP_P_ADAPT_W)
	TrainAdaptB  = int(C.PP_P_ADAPT_B)
	TrainLogTau  = int(C.PP_P_LOGTAU)
	TrainEOSBias = int(C.PP_P_EOS_BIAS)
	TrainParams  = int(C.PP_P_COUNT)
)

// Trainer is a pp_train: a frozen decoder and the plug-in's training graph.
type Trainer struct {
	c   *C.pp_train
	cfg TrainConfig
}

// NewTrainer loads the model and builds the graph.
func NewTrainer(modelPath string, cfg TrainConfig) (*Trainer, error) {
	Init()
	cpath := C.CString(modelPath)
	defer C.free(unsafe.Pointer(cpath))
	cc := C.pp_train_cfg{
		n_batch: C.int32_t(cfg.Batch), n_tokens: C.int32_t(cfg.Tokens), n_items: C.int32_t(cfg.Items),
		n_targets: C.int32_t(cfg.Targets), d_enc: C.int32_t(cfg.DEnc), n_instr: C.int32_t(cfg.NInstr), n_persona: C.int32_t(cfg.NPersona),
		n_threads: C.int32_t(cfg.Threads), scale: C.float(cfg.Scale), tau: C.float(cfg.Tau),
		adapter: C.bool(cfg.Adapter), train_tau: C.bool(cfg.TrainTau),
		eos_bias: C.bool(cfg.EOSBias), eos_bias_scale: C.float(cfg.EOSBiasScale),
	}
	var errbuf [512]C.char
	t := C.pp_train_new(cpath, &cc, &errbuf[0], C.int32_t(len(errbuf)))
	if t == nil {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return &Trainer{c: t, cfg: cfg}, nil
}

// Free releases everything.
func (t *Trainer) Free() {
	if t.c != nil {
		C.pp_train_free(t.c)
		t.c = nil
	}
}

func (t *Trainer) NEmbd() int  { return int(C.pp_train_n_embd(t.c)) }
func (t *Trainer) NVocab() int { return int(C.pp_train_n_vocab(t.c)) }

// InputF32 is a view of a float input; nil when absent.
func (t *Trainer) InputF32(which int) []float32 {
	var n C.int64_t
	p := C.pp_train_input(t.c, C.int32_t(which), &n)
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(p), int(n))
}

// InputI32 is a view of an integer input.
func (t *Trainer) InputI32(which int) []int32 {
	var n C.int64_t
	p := C.pp_train_input(t.c, C.int32_t(which), &n)
	if p == nil {
		return nil
	}
	return unsafe.Slice((*int32)(p), int(n))
}

// Param is a view of a parameter's values; nil when the config has none.
func (t *Trainer) Param(which int) []float32 {
	var n C.int64_t
	p := C.pp_train_param(t.c, C.int32_t(which), &n)
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(p), int(n))
}

// Grad is a view of a parameter's gradient after Compute(true).
func (t *Trainer) Grad(which int) []float32 {
	var n C.int64_t
	p := C.pp_train_grad(t.c, C.int32_t(which), &n)
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(p), int(n))
}

// Compute runs the graph forward (and backward) and returns the loss.
func (t *Trainer) Compute(backward bool) (float32, error) {
	var loss C.float
	if C.pp_train_compute(t.c, C.bool(backward), &loss) != 0 {
		return 0, errors.New(C.GoString(C.pp_train_error(t.c)))
	}
	return float32(loss), nil
}

// Rows is a view of the persona rows [B][n_embd] of the last Compute.
func (t *Trainer) Rows(batch int) []float32 {
	r := max(1, int(t.cfg.NPersona))
	return unsafe.Slice((*float32)(unsafe.Pointer(C.pp_train_rows(t.c))), batch*r*t.NEmbd())
}

// Logits computes the logits of every position [B][T][n_vocab].
func (t *Trainer) Logits(batch, tokens int) ([]float32, error) {
	out := make([]float32, batch*tokens*t.NVocab())
	if len(out) == 0 {
		return nil, fmt.Errorf("empty logits shape")
	}
	if C.pp_train_logits(t.c, (*C.float)(unsafe.Pointer(&out[0])), C.int64_t(len(out))) != 0 {
		return nil, errors.New(C.GoString(C.pp_train_error(t.c)))
	}
	return out, nil
}
