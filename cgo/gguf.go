package cgo

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// GGUFType is enum gguf_type, the type of a GGUF value.
type GGUFType int

// GGUF value types.
const (
	GGUFUint8   GGUFType = C.GGUF_TYPE_UINT8
	GGUFInt8    GGUFType = C.GGUF_TYPE_INT8
	GGUFUint16  GGUFType = C.GGUF_TYPE_UINT16
	GGUFInt16   GGUFType = C.GGUF_TYPE_INT16
	GGUFUint32  GGUFType = C.GGUF_TYPE_UINT32
	GGUFInt32   GGUFType = C.GGUF_TYPE_INT32
	GGUFFloat32 GGUFType = C.GGUF_TYPE_FLOAT32
	GGUFBool    GGUFType = C.GGUF_TYPE_BOOL
	GGUFString  GGUFType = C.GGUF_TYPE_STRING
	GGUFArray   GGUFType = C.GGUF_TYPE_ARRAY
	GGUFUint64  GGUFType = C.GGUF_TYPE_UINT64
	GGUFInt64   GGUFType = C.GGUF_TYPE_INT64
	GGUFFloat64 GGUFType = C.GGUF_TYPE_FLOAT64
)

// String is gguf_type_name ("u32", "str", ...).
func (t GGUFType) String() string {
	if t < 0 || t >= C.GGUF_TYPE_COUNT {
		return fmt.Sprintf("GGUFType(%d)", int(t))
	}
	if p := C.gguf_type_name(C.enum_gguf_type(t)); p != nil {
		return C.GoString(p)
	}
	return fmt.Sprintf("GGUFType(%d)", int(t))
}

// Size is the bytes of one value of t (0 for strings and arrays), as
// GGUF stores it.
func (t GGUFType) Size() int {
	switch t {
	case GGUFUint8, GGUFInt8, GGUFBool:
		return 1
	case GGUFUint16, GGUFInt16:
		return 2
	case GGUFUint32, GGUFInt32, GGUFFloat32:
		return 4
	case GGUFUint64, GGUFInt64, GGUFFloat64:
		return 8
	}
	return 0
}

// GGMLType is enum ggml_type, the type of a tensor's values.
type GGMLType int

// ggml tensor types used by pplug.
const (
	TypeF32  GGMLType = C.GGML_TYPE_F32
	TypeF16  GGMLType = C.GGML_TYPE_F16
	TypeBF16 GGMLType = C.GGML_TYPE_BF16
	TypeQ4_0 GGMLType = C.GGML_TYPE_Q4_0
	TypeQ4_1 GGMLType = C.GGML_TYPE_Q4_1
	TypeQ5_0 GGMLType = C.GGML_TYPE_Q5_0
	TypeQ5_1 GGMLType = C.GGML_TYPE_Q5_1
	TypeQ8_0 GGMLType = C.GGML_TYPE_Q8_0
	TypeQ4_K GGMLType = C.GGML_TYPE_Q4_K
	TypeQ6_K GGMLType = C.GGML_TYPE_Q6_K
	TypeI32  GGMLType = C.GGML_TYPE_I32
)

// Valid reports whether t is a type this ggml knows.
func (t GGMLType) Valid() bool {
	return t >= 0 && t < C.GGML_TYPE_COUNT && C.ggml_type_name(C.enum_ggml_type(t)) != nil
}

// String is ggml_type_name ("f32", "q8_0", ...).
func (t GGMLType) String() string {
	if !t.Valid() {
		return fmt.Sprintf("GGMLType(%d)", int(t))
	}
	return C.GoString(C.ggml_type_name(C.enum_ggml_type(t)))
}

// BlockSize is the number of values in one block of type t.
func (t GGMLType) BlockSize() int64 { return int64(C.ggml_blck_size(C.enum_ggml_type(t))) }

// RowSize is the number of bytes of n values of type t (n a multiple of
// the block size).
func (t GGMLType) RowSize(n int64) int64 {
	return int64(C.ggml_row_size(C.enum_ggml_type(t), C.int64_t(n)))
}

// ToFloat converts n values of type t from src to dst.
func ToFloat(t GGMLType, src []byte, dst []float32) error {
	n := int64(len(dst))
	if n == 0 {
		return nil
	}
	if int64(len(src)) < t.RowSize(n) {
		return fmt.Errorf("ToFloat: %d bytes hold fewer than %d values of %s", len(src), n, t)
	}
	if C.pp_to_float(C.int(t), unsafe.Pointer(&src[0]), (*C.float)(unsafe.Pointer(&dst[0])), C.int64_t(n)) != 0 {
		return fmt.Errorf("no conversion from ggml type %d (%s) to float", int(t), t)
	}
	return nil
}

// Quantize converts rows of f32 values to type t with ggml_quantize_chunk and
// returns the bytes written to dst. dst must hold RowSize(t, perRow)*rows bytes.
func Quantize(t GGMLType, src []float32, dst []byte, rows, perRow int64) (int64, error) {
	if int64(len(src)) != rows*perRow {
		return 0, errors.New("Quantize: source size does not match rows*perRow")
	}
	if perRow%t.BlockSize() != 0 {
		return 0, fmt.Errorf("Quantize: row of %d values is not a multiple of %s's block of %d", perRow, t, t.BlockSize())
	}
	if int64(len(dst)) < t.RowSize(perRow)*rows {
		return 0, errors.New("Quantize: destination too small")
	}
	if bool(C.ggml_quantize_requires_imatrix(C.enum_ggml_type(t))) {
		return 0, fmt.Errorf("Quantize: %s needs an importance matrix", t)
	}
	C.ggml_quantize_init(C.enum_ggml_type(t))
	n := C.ggml_quantize_chunk(C.enum_ggml_type(t), (*C.float)(unsafe.Pointer(&src[0])), unsafe.Pointer(&dst[0]),
		0, C.int64_t(rows), C.int64_t(perRow), nil)
	return int64(n), nil
}

// GGUF is an open gguf_context plus, when read from a file, the ggml context
// holding tensor shapes (no data).
type GGUF struct {
	c    *C.struct_gguf_context
	meta *C.struct_ggml_context
}

// GGUFOpen parses a GGUF file's header, key/values and tensor table without
// reading tensor data.
func GGUFOpen(path string) (*GGUF, error) {
	Init()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var meta *C.struct_ggml_context
	params := C.struct_gguf_init_params{no_alloc: true, ctx: &meta}
	var g *C.struct_gguf_context
	reason := captureReason(func() { g = C.gguf_init_from_file(cpath, params) })
	if g == nil {
		if reason != "" {
			return nil, errors.New(reason)
		}
		return nil, errors.New("gguf_init_from_file failed")
	}
	return &GGUF{c: g, meta: meta}, nil
}

// NewGGUF returns an empty GGUF for writing.
func NewGGUF() *GGUF {
	Init()
	return &GGUF{c: C.gguf_init_empty()}
}

// Free releases the contexts.
func (g *GGUF) Free() {
	if g.c != nil {
		C.gguf_free(g.c)
		g.c = nil
	}
	if g.meta != nil {
		C.ggml_free(g.meta)
		g.meta = nil
	}
}

func (g *GGUF) Version() int      { return int(C.gguf_get_version(g.c)) }
func (g *GGUF) Alignment() int64  { return int64(C.gguf_get_alignment(g.c)) }
func (g *GGUF) DataOffset() int64 { return int64(C.gguf_get_data_offset(g.c)) }
func (g *GGUF) NKV() int          { return int(C.gguf_get_n_kv(g.c)) }
func (g *GGUF) Key(i int) string  { return C.GoString(C.gguf_get_key(g.c, C.int64_t(i))) }
func (g *GGUF) KVType(i int) GGUFType {
	return GGUFType(C.gguf_get_kv_type(g.c, C.int64_t(i)))
}
func (g *GGUF) ArrType(i int) GGUFType {
	return GGUFType(C.gguf_get_arr_type(g.c, C.int64_t(i)))
}
func (g *GGUF) ArrLen(i int) int { return int(C.gguf_get_arr_n(g.c, C.int64_t(i))) }
func (g *GGUF) NTensors() int    { return int(C.gguf_get_n_tensors(g.c)) }

// FindKey returns the index of key, or -1.
func (g *GGUF) FindKey(key string) int {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	return int(C.gguf_find_key(g.c, ckey))
}

// The typed getters below check the stored type first: ggml aborts the
// process on a mismatch, and files come from users.

func (g *GGUF) check(i int, want GGUFType) error {
	if i < 0 || i >= g.NKV() {
		return fmt.Errorf("gguf: no key %d", i)
	}
	if got := g.KVType(i); got != want {
		return fmt.Errorf("gguf: key %q is %s, want %s", g.Key(i), got, want)
	}
	return nil
}

func (g *GGUF) String(i int) (string, error) {
	if err := g.check(i, GGUFString); err != nil {
		return "", err
	}
	return C.GoString(C.gguf_get_val_str(g.c, C.int64_t(i))), nil
}

func (g *GGUF) Uint32(i int) (uint32, error) {
	if err := g.check(i, GGUFUint32); err != nil {
		return 0, err
	}
	return uint32(C.gguf_get_val_u32(g.c, C.int64_t(i))), nil
}

func (g *GGUF) Int32(i int) (int32, error) {
	if err := g.check(i, GGUFInt32); err != nil {
		return 0, err
	}
	return int32(C.gguf_get_val_i32(g.c, C.int64_t(i))), nil
}

func (g *GGUF) Uint64(i int) (uint64, error) {
	if err := g.check(i, GGUFUint64); err != nil {
		return 0, err
	}
	return uint64(C.gguf_get_val_u64(g.c, C.int64_t(i))), nil
}

func (g *GGUF) Float32(i int) (float32, error) {
	if err := g.check(i, GGUFFloat32); err != nil {
		return 0, err
	}
	return float32(C.gguf_get_val_f32(g.c, C.int64_t(i))), nil
}

func (g *GGUF) Bool(i int) (bool, error) {
	if err := g.check(i, GGUFBool); err != nil {
		return false, err
	}
	return bool(C.gguf_get_val_bool(g.c, C.int64_t(i))), nil
}

// ValueString renders any scalar value (or an array summary) as text.
func (g *GGUF) ValueString(i int) string {
	id := C.int64_t(i)
	switch g.KVType(i) {
	case GGUFUint8:
		return fmt.Sprint(uint8(C.gguf_get_val_u8(g.c, id)))
	case GGUFInt8:
		return fmt.Sprint(int8(C.gguf_get_val_i8(g.c, id)))
	case GGUFUint16:
		return fmt.Sprint(uint16(C.gguf_get_val_u16(g.c, id)))
	case GGUFInt16:
		return fmt.Sprint(int16(C.gguf_get_val_i16(g.c, id)))
	case GGUFUint32:
		return fmt.Sprint(uint32(C.gguf_get_val_u32(g.c, id)))
	case GGUFInt32:
		return fmt.Sprint(int32(C.gguf_get_val_i32(g.c, id)))
	case GGUFFloat32:
		return fmt.Sprint(float32(C.gguf_get_val_f32(g.c, id)))
	case GGUFUint64:
		return fmt.Sprint(uint64(C.gguf_get_val_u64(g.c, id)))
	case GGUFInt64:
		return fmt.Sprint(int64(C.gguf_get_val_i64(g.c, id)))
	case GGUFFloat64:
		return fmt.Sprint(float64(C.gguf_get_val_f64(g.c, id)))
	case GGUFBool:
		return fmt.Sprint(bool(C.gguf_get_val_bool(g.c, id)))
	case GGUFString:
		return C.GoString(C.gguf_get_val_str(g.c, id))
	case GGUFArray:
		return fmt.Sprintf("[%s x %d]", g.ArrType(i), g.ArrLen(i))
	}
	return "?"
}

// ArrString returns element j of a string array.
func (g *GGUF) ArrString(i, j int) (string, error) {
	if err := g.check(i, GGUFArray); err != nil {
		return "", err
	}
	if g.ArrType(i) != GGUFString || j < 0 || j >= g.ArrLen(i) {
		return "", fmt.Errorf("gguf: key %q has no string element %d", g.Key(i), j)
	}
	return C.GoString(C.gguf_get_arr_str(g.c, C.int64_t(i), C.size_t(j))), nil
}

// ArrData returns a copy of a numeric array's raw bytes.
func (g *GGUF) ArrData(i int) ([]byte, GGUFType, error) {
	if err := g.check(i, GGUFArray); err != nil {
		return nil, 0, err
	}
	at := g.ArrType(i)
	if at == GGUFString || at == GGUFArray {
		return nil, 0, fmt.Errorf("gguf: key %q is not a numeric array", g.Key(i))
	}
	n := int(C.gguf_get_arr_data_n(g.c, C.int64_t(i)))
	if n == 0 {
		return nil, at, nil
	}
	p := C.gguf_get_arr_data(g.c, C.int64_t(i))
	return C.GoBytes(p, C.int(n)), at, nil
}

// TensorInfo describes one tensor of the file.
type TensorInfo struct {
	Name   string
	Type   GGMLType
	Offset int64 // from DataOffset
	Size   int64 // bytes
	Shape  []int64
}

// Tensor returns the description of tensor i.
func (g *GGUF) Tensor(i int) TensorInfo {
	id := C.int64_t(i)
	ti := TensorInfo{
		Name:   C.GoString(C.gguf_get_tensor_name(g.c, id)),
		Type:   GGMLType(C.gguf_get_tensor_type(g.c, id)),
		Offset: int64(C.gguf_get_tensor_offset(g.c, id)),
		Size:   int64(C.gguf_get_tensor_size(g.c, id)),
	}
	if g.meta != nil {
		cname := C.CString(ti.Name)
		t := C.ggml_get_tensor(g.meta, cname)
		C.free(unsafe.Pointer(cname))
		if t != nil {
			nd := int(C.ggml_n_dims(t))
			for d := range nd {
				ti.Shape = append(ti.Shape, int64(t.ne[d]))
			}
		}
	}
	return ti
}

// FindTensor returns the index of a tensor, or -1.
func (g *GGUF) FindTensor(name string) int {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return int(C.gguf_find_tensor(g.c, cname))
}

// ---- writing ------------------------------------------------------------------

func (g *GGUF) withKey(key string, f func(*C.char)) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	f(ckey)
}

func (g *GGUF) SetString(key, v string) {
	g.withKey(key, func(k *C.char) {
		cv := C.CString(v)
		defer C.free(unsafe.Pointer(cv))
		C.gguf_set_val_str(g.c, k, cv)
	})
}

func (g *GGUF) SetUint32(key string, v uint32) {
	g.withKey(key, func(k *C.char) { C.gguf_set_val_u32(g.c, k, C.uint32_t(v)) })
}

func (g *GGUF) SetInt32(key string, v int32) {
	g.withKey(key, func(k *C.char) { C.gguf_set_val_i32(g.c, k, C.int32_t(v)) })
}

func (g *GGUF) SetUint64(key string, v uint64) {
	g.withKey(key, func(k *C.char) { C.gguf_set_val_u64(g.c, k, C.uint64_t(v)) })
}

func (g *GGUF) SetFloat32(key string, v float32) {
	g.withKey(key, func(k *C.char) { C.gguf_set_val_f32(g.c, k, C.float(v)) })
}

func (g *GGUF) SetBool(key string, v bool) {
	g.withKey(key, func(k *C.char) { C.gguf_set_val_bool(g.c, k, C.bool(v)) })
}

// SetArrayData stores a numeric array; data holds n values of gguf type t.
func (g *GGUF) SetArrayData(key string, t GGUFType, data unsafe.Pointer, n int) {
	g.withKey(key, func(k *C.char) { C.gguf_set_arr_data(g.c, k, C.enum_gguf_type(t), data, C.size_t(n)) })
}

// SetArrayStrings stores a string array.
func (g *GGUF) SetArrayStrings(key string, vals []string) {
	g.withKey(key, func(k *C.char) {
		n := len(vals)
		arr := (**C.char)(C.calloc(C.size_t(max(n, 1)), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		defer C.free(unsafe.Pointer(arr))
		view := unsafe.Slice(arr, max(n, 1))
		for i, s := range vals {
			view[i] = C.CString(s)
		}
		defer func() {
			for i := range n {
				C.free(unsafe.Pointer(view[i]))
			}
		}()
		C.gguf_set_arr_str(g.c, k, arr, C.size_t(n))
	})
}

// CopyKVFrom copies every key/value of src (gguf_set_kv).
func (g *GGUF) CopyKVFrom(src *GGUF) { C.gguf_set_kv(g.c, src.c) }

// RemoveKey deletes key if present.
func (g *GGUF) RemoveKey(key string) {
	g.withKey(key, func(k *C.char) { C.gguf_remove_key(g.c, k) })
}

// AddTensorInfo declares a tensor (name, type, shape) without data; the data
// is streamed by the caller after MetaData, in declaration order, each
// tensor padded to Alignment. It creates a scratch ggml context per call.
func (g *GGUF) AddTensorInfo(name string, t GGMLType, shape []int64) error {
	if len(shape) == 0 || len(shape) > 4 {
		return fmt.Errorf("tensor %q: %d dimensions", name, len(shape))
	}
	if len(name) >= int(C.GGML_MAX_NAME) {
		return fmt.Errorf("tensor name %q longer than %d bytes", name, int(C.GGML_MAX_NAME)-1)
	}
	if g.FindTensor(name) >= 0 {
		return fmt.Errorf("duplicate tensor %q", name)
	}
	if !t.Valid() {
		return fmt.Errorf("tensor %q: unknown ggml type %d", name, int(t))
	}
	if shape[0]%t.BlockSize() != 0 {
		return fmt.Errorf("tensor %q: first dimension %d is not a multiple of %s's block of %d", name, shape[0], t, t.BlockSize())
	}
	params := C.struct_ggml_init_params{mem_size: C.size_t(C.ggml_tensor_overhead() * 2), no_alloc: true}
	ctx := C.ggml_init(params)
	if ctx == nil {
		return errors.New("ggml_init failed")
	}
	defer C.ggml_free(ctx)
	var ne [4]C.int64_t
	for i, d := range shape {
		ne[i] = C.int64_t(d)
	}
	tensor := C.ggml_new_tensor(ctx, C.enum_ggml_type(t), C.int(len(shape)), &ne[0])
	cname := C.CString(name)
	C.ggml_set_name(tensor, cname)
	C.free(unsafe.Pointer(cname))
	// gguf_add_tensor copies the tensor struct; the scratch context can go.
	C.gguf_add_tensor(g.c, tensor)
	return nil
}

// MetaData returns the serialised header, key/values and tensor table, padded
// to the alignment: the bytes that precede the tensor data.
func (g *GGUF) MetaData() []byte {
	n := C.gguf_get_meta_size(g.c)
	buf := C.malloc(n)
	defer C.free(buf)
	C.gguf_get_meta_data(g.c, buf)
	return C.GoBytes(buf, C.int(n))
}

// Write writes the file: the metadata, then each declared tensor's data,
// which data(i, w) writes for tensor i in declaration order, each padded to
// Alignment. A tensor whose data has another size than its type and shape
// give is an error (the file would not load).
func (g *GGUF) Write(w io.Writer, data func(i int, w io.Writer) error) error {
	if _, err := w.Write(g.MetaData()); err != nil {
		return err
	}
	align := g.Alignment()
	for i := range g.NTensors() {
		cw := &countingWriter{w: w}
		if err := data(i, cw); err != nil {
			return err
		}
		t := g.Tensor(i)
		if cw.n != t.Size {
			return fmt.Errorf("tensor %s: %d bytes of data, its type and shape take %d", t.Name, cw.n, t.Size)
		}
		if pad := (align - cw.n%align) % align; pad > 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				return err
			}
		}
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
