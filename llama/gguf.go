package llama

import (
	"io"
	"runtime"

	"github.com/pplug/pplug/cgo"
)

// TensorType is a ggml tensor type ("f32", "f16", "q8_0", ...).
type TensorType int

// TensorF32 is the type of 32-bit float tensors (plug files hold only these).
const TensorF32 = TensorType(cgo.TypeF32)

// String is ggml's name of the type.
func (t TensorType) String() string { return cgo.GGMLType(t).String() }

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name   string
	Type   TensorType
	Offset int64 // from GGUFFile.DataOffset
	Size   int64 // bytes
	Shape  []int64
}

// GGUFFile is the header of a GGUF file: its key/values and tensor table,
// read without the tensor data (which lies at DataOffset+Offset of each
// tensor). The typed getters check the stored type first (ggml would abort
// on a mismatch).
type GGUFFile struct {
	g *cgo.GGUF
}

// OpenGGUF reads the header of the GGUF file at path.
func OpenGGUF(path string) (*GGUFFile, error) {
	g, err := cgo.GGUFOpen(path)
	if err != nil {
		return nil, err // the caller names the file
	}
	f := &GGUFFile{g: g}
	runtime.SetFinalizer(f, func(f *GGUFFile) { _ = f.Close() })
	return f, nil
}

// Close frees the header. It is idempotent.
func (f *GGUFFile) Close() error {
	if f.g != nil {
		f.g.Free()
		f.g = nil
		runtime.SetFinalizer(f, nil)
	}
	return nil
}

// NKV is the number of key/values.
func (f *GGUFFile) NKV() int { return f.g.NKV() }

// Key is the name of key/value i.
func (f *GGUFFile) Key(i int) string { return f.g.Key(i) }

// FindKey returns the index of key, or -1.
func (f *GGUFFile) FindKey(key string) int { return f.g.FindKey(key) }

// String is string value i.
func (f *GGUFFile) String(i int) (string, error) { return f.g.String(i) }

// Uint32 is uint32 value i.
func (f *GGUFFile) Uint32(i int) (uint32, error) { return f.g.Uint32(i) }

// Float32 is float32 value i.
func (f *GGUFFile) Float32(i int) (float32, error) { return f.g.Float32(i) }

// ValueString renders value i as text, whatever its type (an array as a
// summary).
func (f *GGUFFile) ValueString(i int) string { return f.g.ValueString(i) }

// DataOffset is the byte offset of the tensor data in the file.
func (f *GGUFFile) DataOffset() int64 { return f.g.DataOffset() }

// NTensors is the number of tensors.
func (f *GGUFFile) NTensors() int { return f.g.NTensors() }

// FindTensor returns the index of the tensor name, or -1.
func (f *GGUFFile) FindTensor(name string) int { return f.g.FindTensor(name) }

// Tensor describes tensor i.
func (f *GGUFFile) Tensor(i int) TensorInfo {
	t := f.g.Tensor(i)
	return TensorInfo{Name: t.Name, Type: TensorType(t.Type), Offset: t.Offset, Size: t.Size, Shape: t.Shape}
}

// GGUFWriter builds a GGUF file: key/values, then the tensors' names, types
// and shapes; Write streams the file with each tensor's data.
type GGUFWriter struct {
	g *cgo.GGUF
}

// NewGGUFWriter returns an empty GGUF file to fill. Close frees it.
func NewGGUFWriter() *GGUFWriter {
	w := &GGUFWriter{g: cgo.NewGGUF()}
	runtime.SetFinalizer(w, func(w *GGUFWriter) { _ = w.Close() })
	return w
}

// Close frees the writer. It is idempotent.
func (w *GGUFWriter) Close() error {
	if w.g != nil {
		w.g.Free()
		w.g = nil
		runtime.SetFinalizer(w, nil)
	}
	return nil
}

// SetString sets a string value.
func (w *GGUFWriter) SetString(key, v string) { w.g.SetString(key, v) }

// SetUint32 sets a uint32 value.
func (w *GGUFWriter) SetUint32(key string, v uint32) { w.g.SetUint32(key, v) }

// SetFloat32 sets a float32 value.
func (w *GGUFWriter) SetFloat32(key string, v float32) { w.g.SetFloat32(key, v) }

// AddTensor declares a tensor (name, type, shape: shape[0] is the row
// length); its data comes in Write, in declaration order.
func (w *GGUFWriter) AddTensor(name string, t TensorType, shape []int64) error {
	return w.g.AddTensorInfo(name, cgo.GGMLType(t), shape)
}

// Write writes the file to out: the header, then each tensor's data, which
// data(i, w) writes for tensor i; a tensor whose data has another size
// than its type and shape give is an error.
func (w *GGUFWriter) Write(out io.Writer, data func(i int, w io.Writer) error) error {
	return w.g.Write(out, data)
}
