package llama

import (
	"encoding/json"
	"math"

	"github.com/pplug/pplug/cgo"
)

// MetadataValues reads the GGUF key/values keys of the file at path in
// their own types, as JSON would hold them: strings, booleans, numbers
// (json.Number; NaN and infinities as strings), arrays of strings or of
// numbers. Keys the file lacks are absent from the map. ModelInfo.Metadata
// has every value as llama.cpp renders it, a string.
func MetadataValues(path string, keys []string) (map[string]any, error) {
	g, err := cgo.GGUFOpen(path)
	if err != nil {
		return nil, err
	}
	defer g.Free()
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		if i := g.FindKey(k); i >= 0 {
			out[k] = ggufValue(g, i)
		}
	}
	return out, nil
}

// ggufValue is key i as a JSON value of its GGUF type.
func ggufValue(g *cgo.GGUF, i int) any {
	number := func(s string) any {
		if n := json.Number(s); json.Valid([]byte(s)) {
			return n
		}
		return s // NaN, Inf: no JSON number
	}
	switch g.KVType(i) {
	case cgo.GGUFString:
		s, _ := g.String(i)
		return s
	case cgo.GGUFBool:
		b, _ := g.Bool(i)
		return b
	case cgo.GGUFArray:
		n := g.ArrLen(i)
		switch g.ArrType(i) {
		case cgo.GGUFString:
			out := make([]string, n)
			for j := range out {
				out[j], _ = g.ArrString(i, j)
			}
			return out
		case cgo.GGUFArray:
			return g.ValueString(i)
		}
		data, at, err := g.ArrData(i)
		if err != nil {
			return g.ValueString(i)
		}
		return ggufNumbers(data, at, n)
	}
	return number(g.ValueString(i))
}

// ggufNumbers decodes a numeric GGUF array (little-endian).
func ggufNumbers(b []byte, t cgo.GGUFType, n int) []any {
	size := t.Size()
	if size == 0 || len(b) < n*size {
		return nil
	}
	out := make([]any, n)
	for j := range n {
		e := b[j*size : (j+1)*size]
		var u uint64
		for k := size - 1; k >= 0; k-- {
			u = u<<8 | uint64(e[k])
		}
		switch t {
		case cgo.GGUFBool:
			out[j] = u != 0
		case cgo.GGUFInt8:
			out[j] = int8(u)
		case cgo.GGUFInt16:
			out[j] = int16(u)
		case cgo.GGUFInt32:
			out[j] = int32(u)
		case cgo.GGUFInt64:
			out[j] = int64(u)
		case cgo.GGUFFloat32:
			out[j] = finite(float64(math.Float32frombits(uint32(u))))
		case cgo.GGUFFloat64:
			out[j] = finite(math.Float64frombits(u))
		default:
			out[j] = u
		}
	}
	return out
}

// finite keeps a float that JSON can hold; NaN and infinities become null.
func finite(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}
