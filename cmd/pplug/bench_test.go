package main

import (
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

func TestBenchOutputs(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	code, out, errs := pplug(t, "", "bench", "-m", model, "-p", "32", "-n", "8", "-r", "2", "-t", "1", "-b", "64,128",
		"-o", "json", "--profile", prof, "--agg-items", "4,16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "bench") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("bench -o json: %v\n%s", err, out)
	}
	tests := map[string]int{}
	for _, r := range rows {
		for _, k := range []string{"build_version", "llama_cpp_commit", "cpu_info", "backend", "model_filename", "model_type",
			"model_size", "model_n_params", "n_threads", "n_batch", "n_ubatch", "n_ctx", "n_gpu_layers", "test", "unit", "avg", "stddev", "samples", "test_time"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row %v lacks %q", r["test"], k)
			}
		}
		if n := len(r["samples"].([]any)); n != 2 {
			t.Errorf("row %v has %d samples, want 2 (-r 2; the warm-up is not counted)", r["test"], n)
		}
		if r["avg"].(float64) <= 0 {
			t.Errorf("row %v: avg %v", r["test"], r["avg"])
		}
		if r["unit"] == "t/s" {
			if _, ok := r["avg_ts"]; !ok {
				t.Errorf("throughput row %v lacks avg_ts", r["test"])
			}
		}
		tests[r["test"].(string)]++
	}
	for test, n := range map[string]int{"pp32": 2, "tg8": 2, "tg8 (C loop)": 2, "persona encode": 1, "persona ttft none": 1,
		"persona ttft pplug": 1, "persona ttft rag": 1, "persona pp plain": 1, "persona pp +rows": 1,
		"persona aggregate N=4": 1, "persona aggregate N=16": 1} {
		if tests[test] != n {
			t.Errorf("test %q appears %d times, want %d (one per -b value for throughput)", test, tests[test], n)
		}
	}
	// csv, jsonl and md carry the same rows.
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "-o", "csv", "--no-c-loop")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 3 || recs[0][0] != "build_version" {
		t.Fatalf("csv: %v\n%s", err, out)
	}
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "0", "-r", "1", "-t", "1", "-o", "jsonl")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 1 || !json.Valid([]byte(lines[0])) {
		t.Fatalf("jsonl: %s", out)
	}
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1")
	if code != 0 || !strings.Contains(out, "| pp16 |") || !strings.Contains(out, "| tg4 (C loop) |") {
		t.Fatalf("md: %s", out)
	}
	for _, bad := range [][]string{{"-o", "xml"}, {"-t", "0"}, {"-r", "0"}, {"-p", "x"}, {"-c", "8"}} {
		if code, _, _ := pplug(t, "", append([]string{"bench", "-m", model, "-n", "4"}, bad...)...); code == 0 {
			t.Errorf("accepted %v", bad)
		}
	}
}
