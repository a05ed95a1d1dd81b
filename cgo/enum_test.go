package cgo

import "testing"

// The typed enums print as ggml and llama.cpp name them; values without a
// name print as Type(n), never as an empty string or a panic.
func TestEnumStrings(t *testing.T) {
	for got, want := range map[string]string{
		TypeF32.String(): "f32", TypeQ8_0.String(): "q8_0", TypeQ4_K.String(): "q4_K", GGMLType(9999).String(): "GGMLType(9999)",
		GGMLType(-1).String(): "GGMLType(-1)",
		GGUFUint32.String():   "u32", GGUFString.String(): "str", GGUFArray.String(): "arr", GGUFType(99).String(): "GGUFType(99)",
		PoolingCLS.String(): "cls", PoolingUnspecified.String(): "unspecified", PoolingType(42).String(): "PoolingType(42)",
		AttentionNonCausal.String(): "non-causal", FlashAttnAuto.String(): "auto", FlashAttnEnabled.String(): "on",
		DeviceGPU.String(): "gpu", LogWarn.String(): "warn", (TokenAttrControl | TokenAttrByte).String(): "control|byte",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	for typ, size := range map[GGUFType]int{GGUFUint8: 1, GGUFBool: 1, GGUFInt16: 2, GGUFFloat32: 4, GGUFUint64: 8, GGUFString: 0, GGUFArray: 0} {
		if typ.Size() != size {
			t.Errorf("%s: size %d, want %d", typ, typ.Size(), size)
		}
	}
	if TypeQ8_0.BlockSize() != 32 || TypeQ8_0.RowSize(64) != 68 || !TypeF16.Valid() || GGMLType(9999).Valid() {
		t.Error("ggml type facts")
	}
}
