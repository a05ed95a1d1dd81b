package cgo

/*
#include <stdlib.h>
#include "ggml-backend.h"
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	rcgo "runtime/cgo"
	"strings"
	"unsafe"
)

// ModelParams are the load-time options of llama_model_params that pplug uses.
type ModelParams struct {
	GPULayers int32 // layers to offload; -1 means all
	MainGPU   int32
	SplitMode SplitMode
	// Devices names the devices to offload to, in order (ggml device
	// names, as Devices lists them). Nil leaves llama.cpp's default (every
	// GPU device); NoDevices offloads to none.
	Devices      []string
	NoDevices    bool
	UseMmap      bool
	UseMlock     bool
	VocabOnly    bool
	CheckTensors bool
	// Progress, when set, is called with values in [0, 1]; returning false
	// aborts the load.
	Progress func(float32) bool
}

// SplitMode is how layers spread over several GPUs (enum
// llama_split_mode). Its zero value is llama.cpp's default, SplitLayer, so
// that a zero ModelParams loads as llama_model_default_params does.
type SplitMode int32

// Split modes.
const (
	SplitLayer SplitMode = iota
	SplitNone
	SplitRow
)

func (m SplitMode) String() string {
	return enumName(int(m), "SplitMode", []string{SplitNone: "none", SplitLayer: "layer", SplitRow: "row"})
}

func (m SplitMode) c() C.enum_llama_split_mode {
	switch m {
	case SplitNone:
		return C.LLAMA_SPLIT_MODE_NONE
	case SplitRow:
		return C.LLAMA_SPLIT_MODE_ROW
	}
	return C.LLAMA_SPLIT_MODE_LAYER
}

// deviceList builds the NULL-terminated device array of llama_model_params
// in C memory (the caller frees it), or nil for llama.cpp's default.
func deviceList(names []string, none bool) (*C.ggml_backend_dev_t, error) {
	if names == nil && !none {
		return nil, nil
	}
	if none {
		names = nil
	}
	size := C.size_t(unsafe.Sizeof(C.ggml_backend_dev_t(nil)))
	arr := (*C.ggml_backend_dev_t)(C.calloc(C.size_t(len(names)+1), size))
	slots := unsafe.Slice(arr, len(names)+1)
	for i, n := range names {
		d := deviceByName(n)
		if d == nil {
			C.free(unsafe.Pointer(arr))
			return nil, fmt.Errorf("no ggml device named %q", n)
		}
		slots[i] = d
	}
	return arr, nil
}

func deviceByName(name string) C.ggml_backend_dev_t {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.ggml_backend_dev_by_name(cname)
}

// Model is a loaded llama_model. It is freed with Free, exactly once.
type Model struct {
	c *C.struct_llama_model
	v *C.struct_llama_vocab
}

// LoadModel calls llama_model_load_from_file. On failure it returns an error
// that carries llama.cpp's last error line when there is one.
func LoadModel(path string, p ModelParams) (*Model, error) {
	Init()
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	mp.main_gpu = C.int32_t(p.MainGPU)
	mp.split_mode = p.SplitMode.c()
	devs, err := deviceList(p.Devices, p.NoDevices)
	if err != nil {
		return nil, err
	}
	if devs != nil {
		defer C.free(unsafe.Pointer(devs))
		mp.devices = devs
	}
	mp.use_mmap = C.bool(p.UseMmap)
	mp.use_mlock = C.bool(p.UseMlock)
	mp.vocab_only = C.bool(p.VocabOnly)
	mp.check_tensors = C.bool(p.CheckTensors)
	if p.Progress != nil {
		h := rcgo.NewHandle(p.Progress)
		defer h.Delete()
		C.pp_model_params_set_progress(&mp, C.uintptr_t(h))
	}

	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var m *C.struct_llama_model
	var e C.pp_error
	held := LockDevices()
	lines := CaptureErrors(func() { m = C.pp_guard_model_load(cpath, mp, &e) })
	UnlockDevices(held)
	if err := caught(&e, "llama_model_load_from_file"); err != nil {
		return nil, err
	}
	if m == nil {
		if msg := LoadReason(lines); msg != "" {
			return nil, errors.New(msg)
		}
		return nil, errors.New("llama_model_load_from_file failed")
	}
	return &Model{c: m, v: C.llama_model_get_vocab(m)}, nil
}

// Free releases the model. The caller guarantees no context uses it.
func (m *Model) Free() {
	defer UnlockDevices(LockDevices())
	if m.c != nil {
		C.llama_model_free(m.c)
		m.c, m.v = nil, nil
	}
}

func (m *Model) NEmbd() int          { return int(C.llama_model_n_embd(m.c)) }
func (m *Model) NEmbdInp() int       { return int(C.llama_model_n_embd_inp(m.c)) }
func (m *Model) NLayer() int         { return int(C.llama_model_n_layer(m.c)) }
func (m *Model) NHead() int          { return int(C.llama_model_n_head(m.c)) }
func (m *Model) NHeadKV() int        { return int(C.llama_model_n_head_kv(m.c)) }
func (m *Model) NCtxTrain() int      { return int(C.llama_model_n_ctx_train(m.c)) }
func (m *Model) Size() uint64        { return uint64(C.llama_model_size(m.c)) }
func (m *Model) NParams() uint64     { return uint64(C.llama_model_n_params(m.c)) }
func (m *Model) HasEncoder() bool    { return bool(C.llama_model_has_encoder(m.c)) }
func (m *Model) HasDecoder() bool    { return bool(C.llama_model_has_decoder(m.c)) }
func (m *Model) IsRecurrent() bool   { return bool(C.llama_model_is_recurrent(m.c)) }
func (m *Model) RopeType() int       { return int(C.llama_model_rope_type(m.c)) }
func (m *Model) NClsOut() int        { return int(C.llama_model_n_cls_out(m.c)) }
func (m *Model) DecoderStart() int32 { return int32(C.llama_model_decoder_start_token(m.c)) }

// Desc is llama_model_desc: architecture, size class and file type.
func (m *Model) Desc() string {
	return fetchString(func(buf *C.char, n C.size_t) C.int32_t { return C.llama_model_desc(m.c, buf, n) })
}

// MetaCount is the number of metadata key/value pairs.
func (m *Model) MetaCount() int { return int(C.llama_model_meta_count(m.c)) }

// MetaKeyAt and MetaValAt read the i-th metadata pair.
func (m *Model) MetaKeyAt(i int) string {
	return fetchString(func(buf *C.char, n C.size_t) C.int32_t {
		return C.llama_model_meta_key_by_index(m.c, C.int32_t(i), buf, n)
	})
}

func (m *Model) MetaValAt(i int) string {
	return fetchString(func(buf *C.char, n C.size_t) C.int32_t {
		return C.llama_model_meta_val_str_by_index(m.c, C.int32_t(i), buf, n)
	})
}

// MetaVal reads one metadata value as a string.
func (m *Model) MetaVal(key string) (string, bool) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	found := true
	s := fetchString(func(buf *C.char, n C.size_t) C.int32_t {
		r := C.llama_model_meta_val_str(m.c, ckey, buf, n)
		if r < 0 {
			found = false
		}
		return r
	})
	return s, found
}

// ChatTemplate returns the model's chat template ("" when it has none).
// name selects a named template; "" is the default one.
func (m *Model) ChatTemplate(name string) string {
	var cname *C.char
	if name != "" {
		cname = C.CString(name)
		defer C.free(unsafe.Pointer(cname))
	}
	t := C.llama_model_chat_template(m.c, cname)
	if t == nil {
		return ""
	}
	return C.GoString(t)
}

// fetchString calls a llama.cpp "write into buf, return the full length"
// function, growing the buffer when the first one was too small.
func fetchString(f func(buf *C.char, n C.size_t) C.int32_t) string {
	size := 256
	for range 3 {
		buf := (*C.char)(C.malloc(C.size_t(size)))
		n := int(f(buf, C.size_t(size)))
		if n < 0 {
			C.free(unsafe.Pointer(buf))
			return ""
		}
		if n < size {
			s := C.GoStringN(buf, C.int(n))
			C.free(unsafe.Pointer(buf))
			return s
		}
		C.free(unsafe.Pointer(buf))
		size = n + 1
	}
	return ""
}

// ---- vocabulary ------------------------------------------------------------

// TokenAttr is a set of llama_token_attr bits.
type TokenAttr int

// Token attribute bits.
const (
	TokenAttrControl TokenAttr = C.LLAMA_TOKEN_ATTR_CONTROL
	TokenAttrByte    TokenAttr = C.LLAMA_TOKEN_ATTR_BYTE
	TokenAttrUnused  TokenAttr = C.LLAMA_TOKEN_ATTR_UNUSED
)

func (a TokenAttr) String() string {
	var names []string
	for _, b := range []struct {
		bit  TokenAttr
		name string
	}{{TokenAttrControl, "control"}, {TokenAttrByte, "byte"}, {TokenAttrUnused, "unused"}} {
		if a&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("TokenAttr(%#x)", int(a))
	}
	return strings.Join(names, "|")
}

const TokenNull = int32(C.LLAMA_TOKEN_NULL)

func (m *Model) NVocab() int        { return int(C.llama_vocab_n_tokens(m.v)) }
func (m *Model) VocabType() int     { return int(C.llama_vocab_type(m.v)) }
func (m *Model) BOS() int32         { return int32(C.llama_vocab_bos(m.v)) }
func (m *Model) EOS() int32         { return int32(C.llama_vocab_eos(m.v)) }
func (m *Model) EOT() int32         { return int32(C.llama_vocab_eot(m.v)) }
func (m *Model) SEP() int32         { return int32(C.llama_vocab_sep(m.v)) }
func (m *Model) NL() int32          { return int32(C.llama_vocab_nl(m.v)) }
func (m *Model) PAD() int32         { return int32(C.llama_vocab_pad(m.v)) }
func (m *Model) AddBOS() bool       { return bool(C.llama_vocab_get_add_bos(m.v)) }
func (m *Model) AddEOS() bool       { return bool(C.llama_vocab_get_add_eos(m.v)) }
func (m *Model) AddSEP() bool       { return bool(C.llama_vocab_get_add_sep(m.v)) }
func (m *Model) IsEOG(t int32) bool { return bool(C.llama_vocab_is_eog(m.v, C.llama_token(t))) }

// The getters by token id below answer the zero value for an id outside
// the vocabulary: llama.cpp looks them up with std::vector::at, which
// throws.

// inVocab reports whether t is a token id of the vocabulary.
func (m *Model) inVocab(t int32) bool { return t >= 0 && int(t) < m.NVocab() }

func (m *Model) IsControl(t int32) bool {
	return m.inVocab(t) && bool(C.llama_vocab_is_control(m.v, C.llama_token(t)))
}
func (m *Model) TokenAttr(t int32) TokenAttr {
	if !m.inVocab(t) {
		return 0
	}
	return TokenAttr(C.llama_vocab_get_attr(m.v, C.llama_token(t)))
}
func (m *Model) TokenScore(t int32) float32 {
	if !m.inVocab(t) {
		return 0
	}
	return float32(C.llama_vocab_get_score(m.v, C.llama_token(t)))
}

// TokenText is the token's text as stored in the vocabulary.
func (m *Model) TokenText(t int32) string {
	if !m.inVocab(t) {
		return ""
	}
	return C.GoString(C.llama_vocab_get_text(m.v, C.llama_token(t)))
}

// Tokenize converts text to token ids. The caller checks that t is valid
// UTF-8 if it cares; llama.cpp accepts bytes.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("text of %d bytes is too long to tokenize", len(text))
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	// A token covers at least one byte, plus BOS/EOS/SEP.
	capacity := len(text) + 4
	var e C.pp_error
	tokenize := func() ([]int32, C.int32_t, error) {
		out := make([]int32, capacity)
		n := C.pp_guard_tokenize(m.v, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&out[0])),
			C.int32_t(capacity), C.bool(addSpecial), C.bool(parseSpecial), &e)
		return out, n, caught(&e, "llama_tokenize")
	}
	out, n, err := tokenize()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		if n == C.INT32_MIN {
			return nil, errors.New("tokenization overflow")
		}
		capacity = int(-n)
		if out, n, err = tokenize(); err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("llama_tokenize failed (%d)", int(n))
		}
	}
	return out[:n], nil
}

// TokenPiece returns the bytes of one token (special tokens rendered when
// special is true). The bytes may be a partial UTF-8 sequence. A token
// llama.cpp cannot render (it threw) has no bytes: the caller checks that
// t is in the vocabulary.
func (m *Model) TokenPiece(t int32, special bool) []byte {
	if !m.inVocab(t) {
		return nil
	}
	var stack [128]byte
	buf := stack[:]
	var e C.pp_error
	for range 2 {
		n := C.pp_guard_token_to_piece(m.v, C.llama_token(t), (*C.char)(unsafe.Pointer(&buf[0])),
			C.int32_t(len(buf)), C.bool(special), &e)
		if e.caught != 0 {
			return nil
		}
		if n >= 0 {
			out := make([]byte, n)
			copy(out, buf[:n])
			return out
		}
		buf = make([]byte, -n)
	}
	return nil
}

// Detokenize converts tokens back to text.
func (m *Model) Detokenize(tokens []int32, removeSpecial, unparseSpecial bool) (string, error) {
	if len(tokens) == 0 {
		return "", nil
	}
	size := len(tokens)*8 + 16
	var e C.pp_error
	for range 2 {
		buf := make([]byte, size)
		n := C.pp_guard_detokenize(m.v, (*C.llama_token)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
			(*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(size), C.bool(removeSpecial), C.bool(unparseSpecial), &e)
		if err := caught(&e, "llama_detokenize"); err != nil {
			return "", err
		}
		if n >= 0 {
			return string(buf[:n]), nil
		}
		size = int(-n)
	}
	return "", errors.New("llama_detokenize failed")
}

// ---- chat templates ---------------------------------------------------------

// ChatApply formats messages with a chat template (llama_chat_apply_template).
// tmpl is a template string or the name of a built-in template.
func ChatApply(tmpl string, roles, contents []string, addAssistant bool) (string, error) {
	if len(roles) != len(contents) {
		return "", errors.New("roles and contents differ in length")
	}
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))

	n := len(roles)
	var msgs *C.struct_llama_chat_message
	if n > 0 {
		msgs = (*C.struct_llama_chat_message)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{}))))
		defer C.free(unsafe.Pointer(msgs))
	}
	view := unsafe.Slice(msgs, n)
	total := 0
	for i := range n {
		view[i].role = C.CString(roles[i])
		view[i].content = C.CString(contents[i])
		total += len(roles[i]) + len(contents[i])
	}
	defer func() {
		for i := range n {
			C.free(unsafe.Pointer(view[i].role))
			C.free(unsafe.Pointer(view[i].content))
		}
	}()

	size := 2*total + 256
	var e C.pp_error
	for range 2 {
		buf := (*C.char)(C.malloc(C.size_t(size)))
		r := int(C.pp_guard_chat_apply(ctmpl, msgs, C.size_t(n), C.bool(addAssistant), buf, C.int32_t(size), &e))
		if err := caught(&e, "llama_chat_apply_template"); err != nil {
			C.free(unsafe.Pointer(buf))
			return "", err
		}
		if r < 0 {
			C.free(unsafe.Pointer(buf))
			return "", errors.New("chat template not supported by llama.cpp")
		}
		if r <= size {
			s := C.GoStringN(buf, C.int(r))
			C.free(unsafe.Pointer(buf))
			return s, nil
		}
		C.free(unsafe.Pointer(buf))
		size = r + 1
	}
	return "", errors.New("llama_chat_apply_template: output kept growing")
}

// BuiltinChatTemplates lists the names llama.cpp recognises.
func BuiltinChatTemplates() []string {
	n := int(C.llama_chat_builtin_templates(nil, 0))
	if n <= 0 {
		return nil
	}
	arr := (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	defer C.free(unsafe.Pointer(arr))
	C.llama_chat_builtin_templates(arr, C.size_t(n))
	out := make([]string, n)
	for i, p := range unsafe.Slice(arr, n) {
		out[i] = C.GoString(p)
	}
	return out
}

// ---- system ------------------------------------------------------------------

// SystemInfo is llama_print_system_info: the CPU features ggml was built with.
func SystemInfo() string {
	Init()
	return C.GoString(C.llama_print_system_info())
}

// SupportsGPUOffload reports whether a GPU backend is registered.
func SupportsGPUOffload() bool {
	Init()
	return bool(C.llama_supports_gpu_offload())
}

// SupportsMmap reports whether this platform can mmap model files.
func SupportsMmap() bool { return bool(C.llama_supports_mmap()) }

// CCycle runs pp_c_cycle (see shim.h): a plain C load/generate/free cycle.
func CCycle(path string, n int) error {
	Init()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var e C.pp_error
	rc := C.pp_guard_c_cycle(cpath, C.int32_t(n), &e)
	if err := caught(&e, "the C cycle"); err != nil {
		return err
	}
	if rc != 0 {
		return errors.New("the C cycle failed")
	}
	return nil
}

// TrimHeap hands the C heap's free memory back to the system where the C
// library can (glibc), so that memory measurements see what is still held.
func TrimHeap() { C.pp_trim_heap() }

// HeapInUse is the bytes the C heap has handed out and not taken back, and
// whether the C library can tell (glibc 2.33 or later). Unlike the resident
// set size it does not move with fragmentation or free memory kept.
func HeapInUse() (int64, bool) {
	n := int64(C.pp_heap_in_use())
	return n, n >= 0
}

// TimeUs is llama.cpp's monotonic clock in microseconds.
func TimeUs() int64 { return int64(C.llama_time_us()) }
