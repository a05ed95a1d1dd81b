package cgo_test

import (
	"errors"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
)

// guardModel loads stories260K and a context of 64 positions with BOS
// decoded, so that output 0 has logits.
func guardModel(t *testing.T) (*cgo.Model, *cgo.Context) {
	t.Helper()
	m, err := cgo.LoadModel(testenv.Stories260K(t), cgo.ModelParams{UseMmap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	c, err := cgo.NewContext(m, cgo.ContextParams{NCtx: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Free)
	if rc, reason := c.Decode(&cgo.Batch{Tokens: []int32{m.BOS()}, Pos: []int32{0}, Seq: []int32{0}, Output: []int8{1}}); rc != cgo.DecodeOK {
		t.Fatalf("decode: %d %s", rc, reason)
	}
	return m, c
}

// TestGuardCatchesExceptions: llama.cpp throws std::out_of_range for a
// start symbol the grammar lacks (it checks only for "root"); the
// exception used to terminate the process, now it is an error.
func TestGuardCatchesExceptions(t *testing.T) {
	m, _ := guardModel(t)
	s := cgo.NewSamplerChain()
	defer s.Free()
	err := s.AddGrammar(m, `root ::= "a"`, "start")
	if !errors.Is(err, cgo.ErrCPPException) {
		t.Fatalf("missing start symbol: got %v, want cgo.ErrCPPException", err)
	}
	if err := s.AddGrammar(m, `root ::= "a`, "root"); err == nil || errors.Is(err, cgo.ErrCPPException) {
		t.Fatalf("unterminated string: got %v, want llama.cpp's refusal", err)
	}
}

// TestGuardGrammarDeadEnd: a grammar that allows no token (a reversed
// range matches nothing) used to abort the process while sampling (an
// exception from an empty grammar stack, or GGML_ABORT for an end of
// generation token); so did accepting a token the grammar forbids.
func TestGuardGrammarDeadEnd(t *testing.T) {
	m, c := guardModel(t)
	for _, temp := range []float32{0, 1} {
		s := cgo.NewSamplerChain()
		if err := s.AddGrammar(m, `root ::= [z-a]+`, "root"); err != nil {
			t.Fatal(err)
		}
		if temp == 0 {
			s.AddGreedy()
		} else {
			s.AddTemp(temp)
			s.AddDist(1)
		}
		for range 3 { // the chain stays usable after a refusal
			if _, err := s.Sample(c, 0); !errors.Is(err, cgo.ErrGrammarDeadEnd) {
				t.Fatalf("temp %v: sample: got %v, want cgo.ErrGrammarDeadEnd", temp, err)
			}
		}
		s.Free()
	}

	s := cgo.NewSamplerChain()
	defer s.Free()
	if err := s.AddGrammar(m, `root ::= "Once"`, "root"); err != nil {
		t.Fatal(err)
	}
	s.AddGreedy()
	for _, tok := range []int32{m.EOS(), m.BOS()} {
		if err := s.Accept(tok); !errors.Is(err, cgo.ErrGrammarDeadEnd) {
			t.Errorf("accept %d before the grammar's end: got %v, want cgo.ErrGrammarDeadEnd", tok, err)
		}
	}
	tok, err := s.Sample(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p := string(m.TokenPiece(tok, false)); p == "" || p[0] != 'O' {
		t.Fatalf("the grammar allowed %q", p)
	}
}

// TestTokenGettersOutsideVocab: llama.cpp's getters by id throw
// std::out_of_range for an id outside the vocabulary (which terminated
// the process); the binding answers the zero value.
func TestTokenGettersOutsideVocab(t *testing.T) {
	m, _ := guardModel(t)
	for _, tok := range []int32{-1, int32(m.NVocab()), 1 << 30} {
		if m.TokenText(tok) != "" || m.TokenAttr(tok) != 0 || m.TokenScore(tok) != 0 || m.IsControl(tok) || m.TokenPiece(tok, true) != nil {
			t.Errorf("token %d: not the zero values", tok)
		}
	}
}

// TestZeroModelParams: the zero ModelParams loads as llama.cpp's defaults
// do (split mode layer), also without any GPU device.
func TestZeroModelParams(t *testing.T) {
	m, err := cgo.LoadModel(testenv.Stories260K(t), cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	m.Free()
	if cgo.SplitMode(0) != cgo.SplitLayer {
		t.Fatalf("the zero split mode is %v, want layer", cgo.SplitMode(0))
	}
}
