package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// decodeBase64Floats reads OpenAI's base64 embedding: little-endian float32.
func decodeBase64Floats(t *testing.T, s string) []float32 {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("not base64 of float32s (%d bytes): %v", len(b), err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// Both of OpenAI's embedding encodings, through the official Go client:
// float (a list) and base64 (what the npm and Python SDKs ask for by
// default), which must carry the very same float32 values.
func TestEmbeddingEncodings(t *testing.T) {
	ts := startServer(t, 1, "")
	ctx := context.Background()
	client := openai.NewClient(option.WithBaseURL(ts.url+"/v1/"), option.WithAPIKey("sk-placeholder"), option.WithMaxRetries(0))
	inputs := []string{"a red ball", "a boat on the lake"}
	want, err := ts.pz.Encoder.Encode(ctx, inputs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	params := openai.EmbeddingNewParams{Model: "pplug", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs}}
	floats, err := client.Embeddings.New(ctx, params)
	if err != nil || len(floats.Data) != 2 {
		t.Fatalf("float: %+v %v", floats, err)
	}
	params.EncodingFormat = openai.EmbeddingNewParamsEncodingFormatBase64
	b64, err := client.Embeddings.New(ctx, params)
	if err != nil || len(b64.Data) != 2 {
		t.Fatalf("base64: %+v %v", b64, err)
	}
	for i := range inputs {
		f := floats.Data[i].Embedding
		got := make([]float32, len(f))
		for k, x := range f {
			got[k] = float32(x)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("float input %d differs from the encoder's vector", i)
		}
		raw := b64.Data[i].JSON.Embedding.Raw()
		var s string
		if len(raw) < 2 || raw[0] != '"' {
			t.Fatalf("base64 input %d: embedding is %.40s, not a string", i, raw)
		}
		s = raw[1 : len(raw)-1]
		if got := decodeBase64Floats(t, s); !slices.Equal(got, want[i]) {
			t.Errorf("base64 input %d differs from the encoder's vector", i)
		}
	}
	r, b := ts.post(t, "/v1/embeddings", "", map[string]any{"input": "x", "encoding_format": "int8"})
	if r.StatusCode != http.StatusBadRequest || errorParam(b) != "encoding_format" {
		t.Errorf("unknown encoding: %d %s", r.StatusCode, b)
	}
}
