package llama

import (
	"fmt"
	"os"

	"github.com/pplug/pplug/cgo"
)

// tokenEmbeddings locates the token_embd tensor in the model file.
type tokenEmbeddings struct {
	typ    cgo.GGMLType
	nEmbd  int
	nVocab int
	offset int64 // absolute file offset of row 0
	rowLen int64 // bytes per row
}

func (m *Model) tokenEmbeddingTable() (*tokenEmbeddings, error) {
	m.embOnce.Do(func() {
		g, err := cgo.GGUFOpen(m.path)
		if err != nil {
			m.embErr = fmt.Errorf("read token embeddings of %q: %w", m.path, err)
			return
		}
		defer g.Free()
		i := g.FindTensor("token_embd.weight")
		if i < 0 {
			m.embErr = fmt.Errorf("model %q has no token_embd.weight tensor", m.path)
			return
		}
		t := g.Tensor(i)
		if len(t.Shape) != 2 {
			m.embErr = fmt.Errorf("token_embd.weight has shape %v, want 2 dimensions", t.Shape)
			return
		}
		e := &tokenEmbeddings{
			typ:    t.Type,
			nEmbd:  int(t.Shape[0]),
			nVocab: int(t.Shape[1]),
			offset: g.DataOffset() + t.Offset,
			rowLen: t.Type.RowSize(t.Shape[0]),
		}
		if e.rowLen*int64(e.nVocab) != t.Size {
			m.embErr = fmt.Errorf("token_embd.weight: %d bytes for %d rows of %d bytes", t.Size, e.nVocab, e.rowLen)
			return
		}
		m.emb = e
	})
	return m.emb, m.embErr
}

// TokenEmbeddings returns the input rows that stand for tokens: each token's
// row of token_embd.weight, converted to float32 and multiplied by the
// architecture's input scale (see ModelInfo.InputScale), so that decoding
// them as embedding rows is equivalent to decoding the tokens. The result
// holds len(tokens) rows of NEmbd floats.
func (m *Model) TokenEmbeddings(tokens []Token) ([]float32, error) {
	e, err := m.tokenEmbeddingTable()
	if err != nil {
		return nil, err
	}
	if err := checkTokens(tokens, e.nVocab); err != nil {
		return nil, err
	}
	f, err := os.Open(m.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([]float32, len(tokens)*e.nEmbd)
	raw := make([]byte, e.rowLen)
	scale := m.info.InputScale
	for i, t := range tokens {
		if _, err := f.ReadAt(raw, e.offset+int64(t)*e.rowLen); err != nil {
			return nil, fmt.Errorf("read embedding row of token %d: %w", t, err)
		}
		row := out[i*e.nEmbd : (i+1)*e.nEmbd]
		if err := cgo.ToFloat(e.typ, raw, row); err != nil {
			return nil, err
		}
		if scale != 1 {
			for j := range row {
				row[j] *= scale
			}
		}
	}
	return out, nil
}
