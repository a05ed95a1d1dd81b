package main

import (
	"encoding/json"
	"testing"
)

// version --json and info --json carry numbers and booleans as JSON numbers
// and booleans, GGUF metadata in its own types.
func TestVersionAndInfoJSONTypes(t *testing.T) {
	code, out, errs := pplug(t, "", "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, errs)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	if _, ok := v["gpu_offload"].(bool); !ok {
		t.Errorf("gpu_offload = %#v, want a boolean", v["gpu_offload"])
	}
	if n, ok := v["default_threads"].(float64); !ok || n < 1 {
		t.Errorf("default_threads = %#v, want a number", v["default_threads"])
	}
	devs, ok := v["devices"].([]any)
	if !ok || len(devs) == 0 {
		t.Fatalf("devices = %#v, want an array of devices", v["devices"])
	}
	d, _ := devs[0].(map[string]any)
	if _, ok := d["gpu"].(bool); !ok || d["name"] == "" {
		t.Errorf("device %#v", devs[0])
	}
	if _, ok := d["mem_total"].(float64); !ok {
		t.Errorf("device mem_total %#v, want a number", d["mem_total"])
	}
	if v["llama.cpp"] != "ec98e2002" {
		t.Errorf("llama.cpp = %v", v["llama.cpp"])
	}

	model := synthBert(t) // F32 weights: general.file_type 0
	code, out, errs = pplug(t, "", "info", "-m", model, "--json", "--all")
	if code != 0 {
		t.Fatalf("info --json: exit %d: %s", code, errs)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	if _, isBool := info["has_decoder"].(bool); info["file_type"] != 0.0 || info["n_embd"] != 64.0 || !isBool {
		t.Errorf("file_type %#v n_embd %#v has_decoder %#v", info["file_type"], info["n_embd"], info["has_decoder"])
	}
	meta, _ := info["metadata"].(map[string]any)
	for k, want := range map[string]any{"general.architecture": "bert", "bert.attention.causal": false, "bert.context_length": 128.0,
		"bert.embedding_length": 64.0, "bert.pooling_type": 2.0, "general.file_type": 0.0} {
		if meta[k] != want {
			t.Errorf("metadata %s = %#v, want %#v", k, meta[k], want)
		}
	}
	if eps, ok := meta["bert.attention.layer_norm_epsilon"].(float64); !ok || eps <= 0 || eps > 1e-3 {
		t.Errorf("bert.attention.layer_norm_epsilon = %#v, want a small number", meta["bert.attention.layer_norm_epsilon"])
	}
	code, out, _ = pplug(t, "", "info", "-m", model, "--json")
	info = nil
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info["metadata"] != nil || info["file_type"] != 0.0 {
		t.Errorf("info --json without --all: %s", out)
	}
}
