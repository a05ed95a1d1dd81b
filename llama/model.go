package llama

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pplug/pplug/cgo"
)

// Token is a vocabulary id.
type Token = int32

// ModelOptions configure LoadModel. The zero value loads on the CPU with mmap.
type ModelOptions struct {
	// GPULayers is the number of layers to offload to a GPU backend
	// (llama.cpp's -ngl); GPULayersAll (-1) offloads all of them. Ignored
	// without a GPU backend.
	GPULayers int
	// Devices names the devices to offload to (llama.cpp's -dev; see
	// OffloadDevices and ParseDeviceList): nil means every GPU device,
	// {DeviceNone} none.
	Devices []string
	// SplitMode spreads the layers over several devices (llama.cpp's -sm).
	SplitMode SplitMode
	// MainGPU is the index, among the model's devices, of the device that
	// holds the model with SplitNone (llama.cpp's -mg).
	MainGPU int
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// Mlock keeps the model resident.
	Mlock bool
	// VocabOnly loads the tokenizer and metadata, no weights.
	VocabOnly bool
	// CheckTensors validates tensor data while loading (slow).
	CheckTensors bool
	// Progress, when set, receives the load progress in [0, 1].
	Progress func(float32)
}

// Model is a loaded GGUF model. See the package documentation for its
// concurrency rules.
type Model struct {
	mu      sync.RWMutex
	m       *cgo.Model
	path    string
	refs    int  // open contexts
	closing bool // Close was called; free when refs reaches 0
	info    ModelInfo
	gpu     bool         // GPULayers > 0: layers go to the GPU devices
	devOpts ModelOptions // Devices, SplitMode and MainGPU as loaded

	embOnce sync.Once
	emb     *tokenEmbeddings
	embErr  error
}

// LoadModel validates and loads a GGUF model. ctx cancels a load in progress.
// Every failure wraps ErrInvalidModel or the context's error and names the file.
func LoadModel(ctx context.Context, path string, opts ModelOptions) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := validateGGUF(path)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w: %w", path, ErrInvalidModel, err)
	}
	p := cgo.ModelParams{
		GPULayers:    int32(min(opts.GPULayers, math.MaxInt32)),
		UseMmap:      !opts.NoMmap && cgo.SupportsMmap(),
		UseMlock:     opts.Mlock,
		VocabOnly:    opts.VocabOnly,
		CheckTensors: opts.CheckTensors,
	}
	if p.GPULayers < 0 {
		p.GPULayers = math.MaxInt32
	}
	if err := deviceParams(opts, &p); err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	if opts.Progress != nil || ctx.Done() != nil {
		progress := opts.Progress
		p.Progress = func(f float32) bool {
			if progress != nil {
				progress(f)
			}
			return ctx.Err() == nil
		}
	}
	cm, err := cgo.LoadModel(path, p)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("load model %q: %w", path, cerr)
		}
		return nil, fmt.Errorf("load model %q: %w: %w", path, ErrInvalidModel, err)
	}
	m := &Model{m: cm, path: path, gpu: p.GPULayers > 0,
		devOpts: ModelOptions{Devices: opts.Devices, SplitMode: opts.SplitMode, MainGPU: opts.MainGPU}}
	m.info = m.readInfo(fi)
	runtime.SetFinalizer(m, func(m *Model) { m.free() })
	return m, nil
}

// Close releases the model once no Context uses it. It is idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return nil
	}
	m.closing = true
	if m.refs == 0 {
		m.freeLocked()
	}
	return nil
}

func (m *Model) free() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.freeLocked()
}

func (m *Model) freeLocked() {
	if m.m != nil {
		m.m.Free()
		m.m = nil
		runtime.SetFinalizer(m, nil)
	}
}

// acquire registers a new user (a Context) of the model.
func (m *Model) acquire() (*cgo.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || m.m == nil {
		return nil, ErrClosed
	}
	m.refs++
	return m.m, nil
}

// release ends a use started by acquire.
func (m *Model) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.closing {
		m.freeLocked()
	}
}

// use runs f with the C model under the read lock.
func (m *Model) use(f func(*cgo.Model) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.m == nil || m.closing {
		return ErrClosed
	}
	return f(m.m)
}

// Path is the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// ModelInfo is a model's metadata.
type ModelInfo struct {
	Path          string            `json:"path"`
	Architecture  string            `json:"architecture"`
	Name          string            `json:"name,omitempty"`
	Description   string            `json:"description"`
	FileType      string            `json:"file_type,omitempty"`
	FileSize      int64             `json:"file_size"`
	Size          uint64            `json:"size"` // bytes of tensor data
	Params        uint64            `json:"params"`
	NEmbd         int               `json:"n_embd"`
	NLayer        int               `json:"n_layer"`
	NHead         int               `json:"n_head"`
	NHeadKV       int               `json:"n_head_kv"`
	NVocab        int               `json:"n_vocab"`
	NCtxTrain     int               `json:"n_ctx_train"`
	VocabType     string            `json:"vocab_type"`
	BOS           Token             `json:"bos"`
	EOS           Token             `json:"eos"`
	AddBOS        bool              `json:"add_bos"`
	HasEncoder    bool              `json:"has_encoder"`
	HasDecoder    bool              `json:"has_decoder"`
	ChatTemplate  string            `json:"chat_template,omitempty"`
	InputScale    float32           `json:"input_scale"` // factor the graph applies to token embeddings only
	Metadata      map[string]string `json:"metadata,omitempty"`
	NTensors      int               `json:"n_tensors"`
	GGUFVersion   int               `json:"gguf_version"`
	TokenEmbdType string            `json:"token_embd_type,omitempty"`
}

func (m *Model) readInfo(fi ggufSummary) ModelInfo {
	cm := m.m
	info := ModelInfo{
		Path:        m.path,
		Description: cm.Desc(),
		FileSize:    fi.size,
		Size:        cm.Size(),
		Params:      cm.NParams(),
		NEmbd:       cm.NEmbd(),
		NLayer:      cm.NLayer(),
		NVocab:      cm.NVocab(),
		NCtxTrain:   cm.NCtxTrain(),
		VocabType:   vocabTypeName(cm.VocabType()),
		BOS:         cm.BOS(),
		EOS:         cm.EOS(),
		AddBOS:      cm.AddBOS(),
		HasEncoder:  cm.HasEncoder(),
		HasDecoder:  cm.HasDecoder(),
		Metadata:    map[string]string{},
		NTensors:    fi.nTensors,
		GGUFVersion: fi.version,
	}
	// llama.cpp aborts on per-layer queries of a model without layers
	// (vocabulary-only loads).
	if info.NLayer > 0 {
		info.NHead, info.NHeadKV = cm.NHead(), cm.NHeadKV()
	}
	for i := range cm.MetaCount() {
		k := cm.MetaKeyAt(i)
		v := cm.MetaValAt(i)
		// Vocabulary arrays are long and say little; keep them out.
		if strings.HasPrefix(k, "tokenizer.ggml.") && strings.HasSuffix(k, "s") && len(v) > 256 {
			continue
		}
		info.Metadata[k] = v
	}
	info.Architecture = info.Metadata["general.architecture"]
	info.Name = info.Metadata["general.name"]
	info.FileType = info.Metadata["general.file_type"]
	info.ChatTemplate = cm.ChatTemplate("")
	info.InputScale = inputScale(info.Architecture, info.NEmbd)
	info.TokenEmbdType = fi.tokenEmbdType
	return info
}

// inputScale is the factor an architecture's graph applies to token
// embeddings but not to embedding rows given as input (llama.cpp at the
// pinned commit: gemma3, gemma3n and gemma-embedding scale by sqrt(n_embd)
// only when the batch carries tokens). Rows meant to act like tokens must be
// multiplied by it. Other architectures scale both or neither: 1.
func inputScale(arch string, nEmbd int) float32 {
	switch arch {
	case "gemma3", "gemma3n", "gemma-embedding":
		return float32(math.Sqrt(float64(nEmbd)))
	}
	return 1
}

func vocabTypeName(t int) string {
	switch t {
	case 0:
		return "none"
	case 1:
		return "spm"
	case 2:
		return "bpe"
	case 3:
		return "wpm"
	case 4:
		return "ugm"
	case 5:
		return "rwkv"
	case 6:
		return "plamo2"
	}
	return fmt.Sprintf("type-%d", t)
}

// Info returns the model's metadata.
func (m *Model) Info() ModelInfo { return m.info }

// NEmbd is the width of the model's input rows.
func (m *Model) NEmbd() int { return m.info.NEmbd }

// NVocab is the vocabulary size.
func (m *Model) NVocab() int { return m.info.NVocab }

// Meta returns one metadata value as text.
func (m *Model) Meta(key string) (string, bool) {
	var v string
	var ok bool
	_ = m.use(func(cm *cgo.Model) error { v, ok = cm.MetaVal(key); return nil })
	return v, ok
}

// OwnPooling is the pooling the model's metadata asks for
// (<arch>.pooling_type): "mean", "cls", "last", "rank" (a reranker: it gives
// scores, not embeddings) or "none" when it names none. It is what llama.cpp
// applies to a context created with PoolingDefault.
func (m *Model) OwnPooling() string {
	v, _ := m.Meta(m.info.Architecture + ".pooling_type")
	switch v {
	case "1":
		return "mean"
	case "2":
		return "cls"
	case "3":
		return "last"
	case "4":
		return "rank"
	}
	return "none"
}

// ---- tokenizer ------------------------------------------------------------------

// Tokenize converts text to tokens. addSpecial adds BOS/EOS as the model
// asks; parseSpecial turns special-token text (like "<|user|>") into the
// special tokens. Invalid UTF-8 is an error.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenize: text is not valid UTF-8 (first bad byte at offset %d)", firstInvalidUTF8(text))
	}
	var out []Token
	err := m.use(func(cm *cgo.Model) error {
		var err error
		out, err = cm.Tokenize(text, addSpecial, parseSpecial)
		return err
	})
	return out, err
}

func firstInvalidUTF8(s string) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// Detokenize converts tokens to text.
func (m *Model) Detokenize(tokens []Token, removeSpecial, unparseSpecial bool) (string, error) {
	var out string
	err := m.use(func(cm *cgo.Model) error {
		if err := checkTokens(tokens, cm.NVocab()); err != nil {
			return err
		}
		var err error
		out, err = cm.Detokenize(tokens, removeSpecial, unparseSpecial)
		return err
	})
	return out, err
}

// TokenPiece returns the bytes a token stands for; special tokens are
// rendered when special is true. A piece can be part of a UTF-8 sequence.
func (m *Model) TokenPiece(t Token, special bool) []byte {
	var out []byte
	_ = m.use(func(cm *cgo.Model) error {
		if t >= 0 && int(t) < cm.NVocab() {
			out = cm.TokenPiece(t, special)
		}
		return nil
	})
	return out
}

// TokenText is the token's vocabulary entry.
func (m *Model) TokenText(t Token) string {
	var out string
	_ = m.use(func(cm *cgo.Model) error {
		if t >= 0 && int(t) < cm.NVocab() {
			out = cm.TokenText(t)
		}
		return nil
	})
	return out
}

// BOS, EOS and EOT are the special tokens (-1 when the model has none).
func (m *Model) BOS() Token { return m.info.BOS }
func (m *Model) EOS() Token { return m.info.EOS }
func (m *Model) EOT() Token {
	t := Token(-1)
	_ = m.use(func(cm *cgo.Model) error { t = cm.EOT(); return nil })
	return t
}

// AddBOS reports whether the tokenizer prepends BOS.
func (m *Model) AddBOS() bool { return m.info.AddBOS }

// IsEOG reports whether t ends generation (EOS, EOT and the like).
func (m *Model) IsEOG(t Token) bool {
	eog := false
	_ = m.use(func(cm *cgo.Model) error { eog = cm.IsEOG(t); return nil })
	return eog
}

func checkTokens(tokens []Token, nVocab int) error {
	for i, t := range tokens {
		if t < 0 || int(t) >= nVocab {
			return fmt.Errorf("token %d at index %d is outside the vocabulary of %d", t, i, nVocab)
		}
	}
	return nil
}

// ---- chat templates -------------------------------------------------------------

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ApplyChatTemplate formats messages with the model's own template.
// addAssistant ends the text with the assistant's turn opening. It returns
// ErrNoChatTemplate when the model has none.
func (m *Model) ApplyChatTemplate(msgs []ChatMessage, addAssistant bool) (string, error) {
	if m.info.ChatTemplate == "" {
		return "", ErrNoChatTemplate
	}
	return ApplyChatTemplate(m.info.ChatTemplate, msgs, addAssistant)
}

// ApplyChatTemplate formats messages with a template string or the name of
// one of llama.cpp's built-in templates (see BuiltinChatTemplates).
func ApplyChatTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	roles := make([]string, len(msgs))
	contents := make([]string, len(msgs))
	for i, msg := range msgs {
		if !utf8.ValidString(msg.Content) {
			return "", fmt.Errorf("chat message %d is not valid UTF-8", i)
		}
		roles[i], contents[i] = msg.Role, msg.Content
	}
	s, err := cgo.ChatApply(tmpl, roles, contents, addAssistant)
	if err != nil {
		return "", fmt.Errorf("apply chat template: %w", err)
	}
	return s, nil
}

// BuiltinChatTemplates lists the template names llama.cpp knows.
func BuiltinChatTemplates() []string { return cgo.BuiltinChatTemplates() }

// SystemInfo describes the CPU features the ggml build uses.
func SystemInfo() string { return strings.TrimSpace(cgo.SystemInfo()) }

// SupportsGPUOffload reports whether a GPU backend is available.
func SupportsGPUOffload() bool { return cgo.SupportsGPUOffload() }

// LlamaCppCommit is the pinned llama.cpp commit.
const LlamaCppCommit = cgo.LlamaCppCommit

// LlamaCppSource is the Go module (and version) that provides llama.cpp
// and ggml.
const LlamaCppSource = cgo.OllamaModule
