package cgo

import "testing"

func TestLoadReason(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{
			"llama_model_load: error loading model: error loading model hyperparameters: invalid n_rot: 8, expected 16",
			"llama_model_load_from_file_impl: failed to load model",
		}, "error loading model hyperparameters: invalid n_rot: 8, expected 16"},
		{[]string{
			"gguf_init_from_file_impl: tensor 'x' has invalid ggml type 99",
			"llama_model_load: error loading model: llama_model_loader: failed to load model from /m.gguf",
			"llama_model_load_from_file_impl: failed to load model",
		}, "tensor 'x' has invalid ggml type 99"},
		{[]string{"llama_model_load_from_file_impl: failed to load model"}, "failed to load model"},
		{nil, ""},
	} {
		if got := LoadReason(tc.lines); got != tc.want {
			t.Errorf("LoadReason(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
