package persona

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
)

// TestPlugMetadataContradictingTensorsIsRefused writes plugs whose metadata
// disagrees with their tensors (or with itself) and checks that reading
// refuses each one with a message naming the field.
func TestPlugMetadataContradictingTensorsIsRefused(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	p := newTestPlug(t, m, 48, 3)
	p.Encoder = "bge|bert|n_embd=48|0123456789abcdef|pool=cls|max=512"
	p.Pooling = "cls"
	p.LLM = "stories|llama|n_embd=" + strconv.Itoa(p.DLLM) + "|0123456789abcdef"
	dir := t.TempDir()
	write := func(name string, ts []plugTensor, edit func(g *llama.GGUFWriter)) string {
		t.Helper()
		path := filepath.Join(dir, name+".gguf")
		if err := atomicfile.Write(path, func(w io.Writer) error { return p.encode(w, ts, edit) }); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The plug as written reads back.
	if _, err := ReadPlug(write("good", p.tensors(), nil)); err != nil {
		t.Fatalf("a consistent plug was refused: %v", err)
	}
	without := func(name string) []plugTensor {
		var ts []plugTensor
		for _, x := range p.tensors() {
			if x.name != name {
				ts = append(ts, x)
			}
		}
		return ts
	}
	setU32 := func(key string, v uint32) func(g *llama.GGUFWriter) {
		return func(g *llama.GGUFWriter) { g.SetUint32(key, v) }
	}
	setStr := func(key, v string) func(g *llama.GGUFWriter) {
		return func(g *llama.GGUFWriter) { g.SetString(key, v) }
	}
	l := uint32(p.DLLM)
	for _, c := range []struct {
		name string
		ts   []plugTensor
		edit func(g *llama.GGUFWriter)
		want string
	}{
		{"llm_n_embd", p.tensors(), setU32("pplug.llm_n_embd", l+8), "pplug.llm_n_embd"},
		{"d_llm", p.tensors(), func(g *llama.GGUFWriter) { g.SetUint32("pplug.d_llm", l+8); g.SetUint32("pplug.llm_n_embd", l+8) }, "pplug.d_llm"},
		{"d_enc", p.tensors(), setU32("pplug.d_enc", 40), "pplug.d_enc"},
		{"n_instruction 0", p.tensors(), setU32("pplug.n_instruction", 0), "pplug.n_instruction"},
		{"n_instruction 2", p.tensors(), setU32("pplug.n_instruction", 2), "pplug.n_instruction"},
		{"no instruction", without("instruction"), nil, "pplug.n_instruction"},
		{"adapter b alone", without("query_adapter.w"), nil, "query_adapter.w"},
		{"unknown tensor", append(p.tensors(), plugTensor{"proj.w3", p.B1, []int64{int64(l)}}), nil, `"proj.w3"`},
		{"llm identity", p.tensors(), setStr("pplug.llm", "stories|llama|n_embd=999|0123"), "pplug.llm"},
		{"encoder identity", p.tensors(), setStr("pplug.encoder", "bge|bert|n_embd=384|0123|pool=cls|max=512"), "pplug.encoder"},
		{"pooling", p.tensors(), setStr("pplug.pooling", "mean"), "pplug.pooling"},
	} {
		path := write(strings.ReplaceAll(c.name, " ", "-"), c.ts, c.edit)
		_, err := ReadPlug(path)
		if err == nil {
			t.Errorf("%s: a plug whose metadata contradicts its tensors was read", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: the error does not name %s: %v", c.name, c.want, err)
		}
		os.Remove(path)
	}
}

// TestPlugLayoutRoundTrip: the layout a plug was trained on reads back,
// an old plug reads as the prompt layout and an unknown layout is refused.
func TestPlugLayoutRoundTrip(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	p := newTestPlug(t, m, 48, 3)
	dir := t.TempDir()
	plain := p.Checksum()
	for _, layout := range []string{"", LayoutChat} {
		p.Layout = layout
		path := filepath.Join(dir, "p"+layout+".gguf")
		if err := p.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		r, err := ReadPlug(path)
		if err != nil || r.Layout != layout || r.Chat() != (layout == LayoutChat) {
			t.Fatalf("layout %q read back as %q (%v)", layout, r.Layout, err)
		}
	}
	if p.Checksum() == plain {
		t.Fatal("the layout does not enter the checksum")
	}
	p.Layout = "sideways"
	path := filepath.Join(dir, "bad.gguf")
	if err := atomicfile.Write(path, func(w io.Writer) error {
		return p.encode(w, p.tensors(), func(g *llama.GGUFWriter) { g.SetString("pplug.layout", "sideways") })
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPlug(path); err == nil || !strings.Contains(err.Error(), "layout") {
		t.Fatalf("an unknown layout: %v", err)
	}
}
