package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// llama-bench's fields at the pinned commit (tools/llama-bench, test::
// get_fields and get_field_type), written out here independently of the
// code under test: "s" string, "b" bool, "i" integer, "f" float.
var wantLlamaBench = []struct{ name, kind string }{
	{"build_commit", "s"}, {"build_number", "i"}, {"cpu_info", "s"}, {"gpu_info", "s"}, {"backends", "s"},
	{"model_filename", "s"}, {"model_type", "s"}, {"model_size", "i"}, {"model_n_params", "i"},
	{"n_batch", "i"}, {"n_ubatch", "i"}, {"n_threads", "i"}, {"cpu_mask", "s"}, {"cpu_strict", "b"}, {"poll", "i"},
	{"type_k", "s"}, {"type_v", "s"}, {"n_gpu_layers", "i"}, {"n_cpu_moe", "i"}, {"split_mode", "s"},
	{"main_gpu", "i"}, {"no_kv_offload", "b"}, {"flash_attn", "i"}, {"devices", "s"}, {"tensor_split", "s"},
	{"tensor_buft_overrides", "s"}, {"use_mmap", "b"}, {"embeddings", "b"}, {"no_op_offload", "i"}, {"no_host", "b"},
	{"n_prompt", "i"}, {"n_gen", "i"}, {"n_depth", "i"}, {"test_time", "s"},
	{"avg_ns", "i"}, {"stddev_ns", "i"}, {"avg_ts", "f"}, {"stddev_ts", "f"},
}

// pplug's fields after llama-bench's (samples only in JSON).
var wantPPlugExtra = []string{"test", "unit", "avg", "stddev", "note", "n_ctx", "pplug_version"}

// jsonNumber matches every number in a JSON text (outside strings, as the
// texts checked have no digits after a quote-free ':' inside strings).
var sciNumber = regexp.MustCompile(`[:\[,]\s*-?[0-9.]+[eE][-+]?[0-9]+`)

// checkBenchObject checks one JSON row against llama-bench's schema.
func checkBenchObject(t *testing.T, r map[string]any, reps int) {
	t.Helper()
	for _, f := range wantLlamaBench {
		v, ok := r[f.name]
		if !ok {
			t.Errorf("row %v lacks llama-bench's %q", r["test"], f.name)
			continue
		}
		switch f.kind {
		case "s":
			_, ok = v.(string)
		case "b":
			_, ok = v.(bool)
		case "i":
			x, isNum := v.(float64)
			ok = isNum && x == math.Trunc(x)
		case "f":
			_, ok = v.(float64)
		}
		if !ok {
			t.Errorf("row %v: %s = %#v is not of llama-bench's type %s", r["test"], f.name, v, f.kind)
		}
	}
	for _, k := range append([]string{"samples_ns", "samples_ts", "samples"}, wantPPlugExtra...) {
		if _, ok := r[k]; !ok {
			t.Errorf("row %v lacks %q", r["test"], k)
		}
	}
	ns, _ := r["samples_ns"].([]any)
	ts, _ := r["samples_ts"].([]any)
	if len(ns) != reps || len(ts) != reps {
		t.Fatalf("row %v: %d samples_ns and %d samples_ts, want %d (-r; the warm-up is not counted)", r["test"], len(ns), len(ts), reps)
	}
	// llama-bench's semantics: t/s = (n_prompt + n_gen) tokens over each
	// repetition's time; avg_ns the mean time.
	tokens := r["n_prompt"].(float64) + r["n_gen"].(float64)
	var sumNs, sumTs float64
	for i := range ns {
		d := ns[i].(float64)
		if d <= 0 || d != math.Trunc(d) {
			t.Errorf("row %v: samples_ns[%d] = %v", r["test"], i, d)
		}
		if want := 1e9 * tokens / d; math.Abs(ts[i].(float64)-want) > 1e-3*want+1e-6 {
			t.Errorf("row %v: samples_ts[%d] = %v, want %v", r["test"], i, ts[i], want)
		}
		sumNs += d
		sumTs += ts[i].(float64)
	}
	if got, want := r["avg_ns"].(float64), math.Floor(sumNs/float64(reps)); math.Abs(got-want) > 1 {
		t.Errorf("row %v: avg_ns %v, want %v", r["test"], got, want)
	}
	if got, want := r["avg_ts"].(float64), sumTs/float64(reps); math.Abs(got-want) > 1e-3*want+1e-6 {
		t.Errorf("row %v: avg_ts %v, want %v", r["test"], got, want)
	}
}

func TestBenchLlamaBenchSchema(t *testing.T) {
	model := testenv.Stories260K(t)
	// A second model: the same weights under another name.
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	model2 := filepath.Join(t.TempDir(), "second.gguf")
	if err := os.WriteFile(model2, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := pplug(t, "", "bench", "-m", model, "-m", model2, "-p", "16", "-n", "4", "-pg", "8,2", "-d", "0,8",
		"-b", "2048,128", "-ub", "32", "-fa", "off", "-r", "2", "-t", "1", "-o", "json", "--progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "benchmark 1/32: pp16: starting") || !strings.Contains(errs, "pp8+tg2 @ d8: run 2/2") {
		t.Errorf("--progress lines missing:\n%s", errs)
	}
	if m := sciNumber.FindString(out); m != "" {
		t.Errorf("a number in scientific notation: %q", m)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("bench -o json: %v\n%s", err, out)
	}
	// 2 models x 2 batch sizes x 2 depths x (pp16, tg4, tg4 C loop, pp8+tg2).
	if len(rows) != 32 {
		t.Fatalf("%d rows, want 32", len(rows))
	}
	seen := map[string]int{}
	for _, r := range rows {
		checkBenchObject(t, r, 2)
		// The batch sizes as asked: the context of a 16-token test holds
		// fewer positions than 128 or 2048, which must not show.
		if nb := r["n_batch"].(float64); nb != 2048 && nb != 128 {
			t.Errorf("row %v: n_batch %v, want the requested 2048 or 128", r["test"], nb)
		}
		if r["n_ubatch"] != 32.0 || r["flash_attn"] != 0.0 || r["n_threads"] != 1.0 || r["build_commit"] != "ec98e2002" || r["unit"] != "t/s" {
			t.Errorf("row %v: n_ubatch %v flash_attn %v n_threads %v build_commit %v unit %v", r["test"], r["n_ubatch"], r["flash_attn"],
				r["n_threads"], r["build_commit"], r["unit"])
		}
		key := fmt.Sprintf("%s|%v|%v|p%v|g%v|d%v", filepath.Base(r["model_filename"].(string)), r["test"], r["n_batch"], r["n_prompt"], r["n_gen"], r["n_depth"])
		seen[key]++
	}
	for _, m := range []string{filepath.Base(model), "second.gguf"} {
		for _, nb := range []string{"2048", "128"} {
			for _, d := range []int{0, 8} {
				suffix := ""
				if d > 0 {
					suffix = fmt.Sprintf(" @ d%d", d)
				}
				for _, tc := range []struct {
					name  string
					np, g int
				}{{"pp16", 16, 0}, {"tg4", 0, 4}, {"tg4" + suffix + " (C loop)", 0, 4}, {"pp8+tg2", 8, 2}} {
					name := tc.name
					if !strings.Contains(name, "(C loop)") {
						name += suffix
					}
					key := fmt.Sprintf("%s|%s|%s|p%d|g%d|d%d", m, name, nb, tc.np, tc.g, d)
					if seen[key] != 1 {
						t.Errorf("row %s appears %d times, want once", key, seen[key])
					}
				}
			}
		}
	}

	// jsonl: the same objects, one per line.
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "0", "-r", "1", "-t", "1", "-o", "jsonl")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 1 {
		t.Fatalf("jsonl: exit %d\n%s", code, out)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &obj); err != nil {
		t.Fatalf("jsonl line: %v\n%s", err, lines[0])
	}
	checkBenchObject(t, obj, 1)

	// csv: llama-bench's columns, then pplug's; the note survives.
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "-o", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 4 {
		t.Fatalf("csv: exit %d, %v\n%s", code, err, out)
	}
	var header []string
	for _, f := range wantLlamaBench {
		header = append(header, f.name)
	}
	header = append(header, wantPPlugExtra...)
	if !slices.Equal(recs[0], header) {
		t.Fatalf("csv header\n%v\nwant\n%v", recs[0], header)
	}
	col := func(name string) int { return slices.Index(header, name) }
	if recs[2][col("test")] != "tg4" || !strings.Contains(recs[2][col("note")], "Go API") || !strings.Contains(recs[3][col("note")], "C loop") {
		t.Errorf("csv rows lost their test or note: %v / %v", recs[2], recs[3])
	}
	if v := recs[1][col("avg_ts")]; !regexp.MustCompile(`^[0-9]+\.[0-9]{6}$`).MatchString(v) {
		t.Errorf("csv avg_ts %q: want fixed notation with 6 decimals", v)
	}

	// sql: llama-bench's table; it loads into sqlite where there is one.
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "-o", "sql", "--no-c-loop")
	if code != 0 || !strings.HasPrefix(out, "CREATE TABLE IF NOT EXISTS llama_bench (\n  build_commit TEXT,\n  build_number INTEGER,") ||
		strings.Count(out, "INSERT INTO llama_bench (build_commit, build_number, cpu_info,") != 2 || !strings.Contains(out, "  avg_ts REAL,") {
		t.Fatalf("sql:\n%s", out)
	}
	if sq, err := exec.LookPath("sqlite3"); err == nil {
		db := filepath.Join(t.TempDir(), "b.db")
		cmd := exec.Command(sq, db)
		cmd.Stdin = strings.NewReader(out)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite3 rejects the sql: %v\n%s", err, msg)
		}
		got, err := exec.Command(sq, db, "SELECT test, n_prompt, n_gen, typeof(avg_ts) FROM llama_bench ORDER BY n_gen").CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "pp16|16|0|real\ntg4|0|4|real" {
			t.Fatalf("sqlite3 query: %v\n%s", err, got)
		}
	}

	// md: llama-bench's table, with the columns that differ from the defaults.
	code, out, _ = pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "-b", "64", "-fa", "on")
	if code != 0 || !strings.Contains(out, "| n_batch |") || !strings.Contains(out, "|  fa |") || !strings.Contains(out, "|      64 |") ||
		!strings.Contains(out, "tg4 (C loop) |") || !strings.Contains(out, "build: ec98e2002 (0)") {
		t.Fatalf("md:\n%s", out)
	}
}

func TestBenchBadOptions(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, bad := range [][]string{
		{"-p", "0", "-n", "0"}, // nothing to run
		{"-p", "0", "-n", "0", "-pg", "0,0"},
		{"-pg", "5"}, {"-pg", "5,x"}, {"-o", "xml"}, {"-t", "0"}, {"-r", "0"}, {"-p", "x"}, {"-p", "8-4*1"},
		{"-c", "8"}, {"-fa", "maybe"}, {"-d", "-1"},
	} {
		args := append([]string{"bench", "-m", model, "-r", "1", "-t", "1"}, bad...)
		code, out, errs := pplug(t, "", args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s%s", bad, code, out, errs)
		}
	}
	if code, _, errs := pplug(t, "", "bench", "-m", model, "-p", "0", "-n", "0"); !strings.Contains(errs, "nothing to run") {
		t.Errorf("-p 0 -n 0: exit %d, %s", code, errs)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string][]int{"7": {7}, "1-4": {1, 2, 3, 4}, "16-64*2": {16, 32, 64}, "0-10+5": {0, 5, 10}, "-1": {-1}, "-1-1": {-1, 0, 1}} {
		got, err := parseRange(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "--1", "4-", "1-4/2", "1-4+0", "3-9*1", "1-4+2x", "1--4", "99999999999999999999"} {
		if got, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) = %v, want an error", bad, got)
		}
	}
}

// TestBenchChecksEveryListFirst: every numeric list of bench is checked
// against what it accepts, with a message saying the range, before any
// model is loaded (the model here does not exist: a check made after
// loading would report that instead).
func TestBenchChecksEveryListFirst(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.gguf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-p", "-1"}, "--n-prompt -1: want 0 (no pp test) up to 16777216 tokens"},
		{[]string{"-n", "-1"}, "--n-gen -1: want 0 (no tg test)"},
		{[]string{"-n", "99999999999"}, "--n-gen 99999999999: want 0 (no tg test) up to 16777216"},
		{[]string{"-n", "99999999999999999999"}, "--n-gen 99999999999999999999: 99999999999999999999 is too large"},
		{[]string{"-pg", "-1,4"}, "--pg -1: want 0 up to 16777216 tokens each"},
		{[]string{"-d", "-5"}, "--n-depth -5: want 0 up to"},
		{[]string{"-t", "0"}, "--threads 0: want 1 up to 512"},
		{[]string{"-t", "1-1024*2"}, "--threads 1024: want 1 up to 512"},
		{[]string{"-b", "0"}, "--batch-size 0: want 1 up to"},
		{[]string{"-ub", "-2"}, "--ubatch-size -2: want 1 up to"},
		{[]string{"-c", "-1"}, "--ctx-size -1: want 0 (what each test needs)"},
		{[]string{"-ngl", "-2"}, `--n-gpu-layers: "-2": want a number of layers (0: none), auto or all`},
		{[]string{"-r", "0"}, "--repetitions 0: want 1 up to 1000000"},
		{[]string{"-p", "16000000", "-d", "1000000"}, "test pp16000000 @ d1000000 needs 17000000 positions, more than 16777216"},
		{[]string{"--agg-items", "4,0"}, `--agg-items "0": want numbers of items from 1`},
		{[]string{"-o", "xml"}, `--output "xml"`},
		{[]string{"-fa", "maybe"}, `--flash-attn "maybe"`},
	} {
		args := append([]string{"bench", "-m", absent}, tc.args...)
		code, out, errs := pplug(t, "", args...)
		if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%q: exit %d, %q%q; want exit 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	// A missing model is found before any table is printed.
	code, out, errs := pplug(t, "", "bench", "-m", absent, "-p", "4", "-n", "0")
	if code != 1 || out != "" || !strings.Contains(errs, "model "+absent+": no such file") {
		t.Errorf("a missing model: exit %d, %q%q", code, out, errs)
	}
}

func TestBenchPersonaRows(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	code, out, errs := pplug(t, "", "bench", "-m", model, "-p", "16", "-n", "0", "-r", "2", "-t", "1",
		"-o", "json", "--profile", prof, "--agg-items", "4,16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("bench -o json: %v\n%s", err, out)
	}
	units := map[string]string{}
	for _, r := range rows {
		checkBenchObject(t, r, 2)
		units[r["test"].(string)] = r["unit"].(string)
		if r["avg"].(float64) <= 0 || len(r["samples"].([]any)) != 2 {
			t.Errorf("row %v: avg %v samples %v", r["test"], r["avg"], r["samples"])
		}
		if strings.HasPrefix(r["test"].(string), "persona") && r["note"] == "" {
			t.Errorf("persona row %v has no note", r["test"])
		}
	}
	for test, unit := range map[string]string{"pp16": "t/s", "persona encode": "items/s", "persona ttft none": "ms",
		"persona ttft pplug": "ms", "persona ttft rag": "ms", "persona pp plain": "t/s", "persona pp +rows": "t/s",
		"persona aggregate N=4": "us/query", "persona aggregate N=16": "us/query"} {
		if units[test] != unit {
			t.Errorf("test %q: unit %q, want %q", test, units[test], unit)
		}
	}
	if len(rows) != 9 {
		t.Errorf("%d rows, want 9", len(rows))
	}
	// Only the persona tests: no -p/-n is fine with --profile.
	code, out, errs = pplug(t, "", "bench", "-m", model, "-p", "0", "-n", "0", "-r", "1", "-t", "1", "--profile", prof, "--agg-items", "4")
	if code != 0 || !strings.Contains(out, "| persona ttft pplug |") {
		t.Fatalf("persona only: exit %d\n%s%s", code, out, errs)
	}
}

// TestBenchPersonaOnly: --profile with -p 0 -n 0 runs the persona tests
// alone, without an empty llama-bench table, and --cache-dir (the
// embedding cache, as generate takes it) adds the test of a persona
// prepared from that cache.
func TestBenchPersonaOnly(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	cache := t.TempDir()
	code, out, errs := pplug(t, "", "bench", "-m", model, "-p", "0", "-n", "0", "-r", "1", "-t", "1", "--profile", prof,
		"--agg-items", "4", "--cache-dir", cache)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, "| model | persona test |") || strings.Contains(out, "|  t/s") || strings.Contains(out, "| test ") {
		t.Errorf("persona only: want the persona table alone:\n%s", out)
	}
	if !regexp.MustCompile(`\| persona prepare cached \| [0-9.]+ ± [0-9.]+ \| items/s \| 8 history items, 8 from the embedding cache in ` + regexp.QuoteMeta(cache)).MatchString(out) {
		t.Errorf("no persona prepare cached row from %s:\n%s", cache, out)
	}
	if ents, _ := os.ReadDir(cache); len(ents) == 0 {
		t.Errorf("the cache folder %s is empty", cache)
	}
}

// TestBenchPollPrio: --poll is a list (one test per value, reported in the
// poll field and the md column), --prio one value; both in llama-bench's
// ranges.
func TestBenchPollPrio(t *testing.T) {
	model := testenv.Stories260K(t)
	code, out, errs := pplug(t, "", "bench", "-m", model, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--poll", "0,100", "--prio", "-1", "-o", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var polls []float64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		polls = append(polls, r["poll"].(float64))
	}
	if !slices.Equal(polls, []float64{0, 100}) {
		t.Errorf("poll fields %v, want [0 100] (one pp8 test per --poll value)", polls)
	}
	code, out, errs = pplug(t, "", "bench", "-m", model, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--poll", "0")
	if code != 0 || !strings.Contains(out, "|       poll |") || !strings.Contains(out, "|          0 |") {
		t.Errorf("md with --poll 0: exit %d, want a poll column\n%s%s", code, out, errs)
	}
	for _, bad := range [][]string{{"--poll", "101"}, {"--poll", "-1"}, {"--poll", "x"}, {"--prio", "4"}, {"--prio", "-2"}} {
		args := append([]string{"bench", "-m", model, "-p", "8", "-n", "0", "-r", "1", "-t", "1"}, bad...)
		code, _, errs := pplug(t, "", args...)
		if code != 2 || !strings.Contains(errs, bad[0]) {
			t.Errorf("%v: exit %d, want 2 and an error naming %s: %s", bad, code, bad[0], errs)
		}
	}
}
