package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/persona"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvalScore(t *testing.T) {
	dir := t.TempDir()
	golds := writeFile(t, dir, "golds.json", `{"task": "LaMP_2", "golds": [
		{"id": "1", "output": "comedy"}, {"id": "2", "output": "classic"},
		{"id": "3", "output": "fantasy"}, {"id": "4", "output": "comedy"}]}`)
	preds := writeFile(t, dir, "preds.json", `{"task": "LaMP_2", "golds": [
		{"id": "1", "output": " comedy\n"}, {"id": "2", "output": "classic"},
		{"id": "3", "output": "Fantasy"}, {"id": "4", "output": "comedy"}, {"id": "9", "output": "comedy"}]}`)
	code, out, errs := pplug(t, "", "eval", "score", "--golds", golds, "--preds", preds)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"| task | accuracy | f1 |", "| LaMP_2 | 0.7500 |", "4 predictions scored, 1 not valid answers, 1 without a gold"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "warning") {
		t.Errorf("no warning about the extra prediction: %q", errs)
	}
	code, out, errs = pplug(t, "", "eval", "score", "--task", "LaMP_2", "--golds", golds, "--preds", preds, "--json")
	var s map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
		t.Fatalf("--json: exit %d %s %s", code, out, errs)
	}
	if s["accuracy"] != 0.75 || s["n"] != 4.0 || s["task"] != "LaMP_2" || s["invalid_predictions"] != 1.0 {
		t.Fatalf("json scores %v", s)
	}
	// LaMP-3: an unparsable rating counts as the farther of 1 and 5.
	g3 := writeFile(t, dir, "g3.json", `{"task": "LaMP_3", "golds": [{"id": "a", "output": "2"}, {"id": "b", "output": "5"}]}`)
	p3 := writeFile(t, dir, "p3.json", `{"golds": [{"id": "a", "output": "3"}, {"id": "b", "output": "five"}]}`)
	code, out, _ = pplug(t, "", "eval", "score", "--golds", g3, "--preds", p3, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s["mae"] != 2.5 {
		t.Fatalf("LaMP_3: %d %s", code, out)
	}

	missing := writeFile(t, dir, "missing.json", `{"golds": [{"id": "1", "output": "comedy"}]}`)
	// Bad data exits 1 ("pplug: ..."), bad usage exits 2 ("pplug eval score: ...").
	for name, c := range map[string]struct {
		args []string
		code int
	}{
		"missing prediction": {[]string{"--golds", golds, "--preds", missing}, 1},
		"task mismatch":      {[]string{"--task", "LaMP_3", "--golds", golds, "--preds", preds}, 1},
		"no golds file":      {[]string{"--golds", filepath.Join(dir, "none.json"), "--preds", preds}, 1},
		"not json":           {[]string{"--golds", writeFile(t, dir, "bad.json", "{"), "--preds", preds}, 1},
		"no preds flag":      {[]string{"--golds", golds}, 2},
		"unknown task":       {[]string{"--task", "LaMP_9", "--golds", golds, "--preds", preds}, 2},
	} {
		code, _, errs := pplug(t, "", append([]string{"eval", "score"}, c.args...)...)
		prefix := "pplug: "
		if c.code == 2 {
			prefix = "pplug eval score: "
		}
		if code != c.code || !strings.HasPrefix(errs, prefix) {
			t.Errorf("%s: exit %d (want %d), %q", name, code, c.code, errs)
		}
	}
}

// evalData writes a small synthetic dataset and an untrained plug for
// stories260K.
func evalData(t *testing.T) (dir, plug string) {
	t.Helper()
	dir = t.TempDir()
	code, out, errs := pplug(t, "", "eval", "synth-users", "-o", filepath.Join(dir, "data"), "--users", "8", "--items", "5",
		"--questions-per-user", "2", "--split", "0.5", "--seed", "4")
	if code != 0 || !strings.Contains(out, "dev 2 users / 4 questions") {
		t.Fatalf("synth-users: exit %d %s %s", code, out, errs)
	}
	plug = filepath.Join(dir, "plug.gguf")
	if code, _, errs := pplug(t, "", "plug", "init", "-m", testenv.Stories260K(t), "-o", plug, "-t", "1"); code != 0 {
		t.Fatalf("plug init: %s", errs)
	}
	return filepath.Join(dir, "data"), plug
}

func TestEvalEveryMethod(t *testing.T) {
	data, plug := evalData(t)
	model := testenv.Stories260K(t)
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, errs := pplug(t, "", "eval", "--task", "LaMP_7", "--questions", filepath.Join(data, "dev_questions.json"),
		"--golds", filepath.Join(data, "dev_outputs.json"), "-m", model, "--plug", plug, "--limit", "3", "-n", "8",
		"-t", "1", "--out", out, "--cache-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "| method | rouge-1 | rouge-l | nll/token | out tokens | EOS | EOS <= 2x gold | n | s/question |") || !strings.Contains(stdout, "| pplug+bm25 |") {
		t.Fatalf("table:\n%s", stdout)
	}
	for _, m := range eval.AllMethods() {
		o, err := lamp.ReadOutputs(filepath.Join(out, eval.OutputsFile(m)))
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Golds) != 3 || o.Task != "LaMP_7" {
			t.Fatalf("%s: %+v", m, o)
		}
		if !strings.Contains(errs, string(m)+": 3 questions") {
			t.Errorf("stderr lacks the %s line:\n%s", m, errs)
		}
	}
	var res struct {
		Task      string
		Questions int
		Results   []struct {
			Method             string
			Questions          int
			SecondsPerQuestion float64 `json:"seconds_per_question"`
			Scores             map[string]any
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("results.json: %v\n%s", err, b)
	}
	if res.Task != "LaMP_7" || res.Questions != 3 || len(res.Results) != 5 {
		t.Fatalf("results.json: %s", b)
	}
	for _, r := range res.Results {
		for _, k := range []string{"rouge-1", "rouge-l"} {
			if v, ok := r.Scores[k].(float64); !ok || v < 0 || v > 1 {
				t.Errorf("%s: %s = %v", r.Method, k, r.Scores[k])
			}
		}
		if r.Questions != 3 || !(r.SecondsPerQuestion > 0) {
			t.Errorf("%s: %+v", r.Method, r)
		}
	}
	if md, err := os.ReadFile(filepath.Join(out, "results.md")); err != nil || !strings.Contains(string(md), "| recent |") {
		t.Fatalf("results.md: %v\n%s", err, md)
	}
	// eval score of a predictions file agrees with results.json; it
	// refuses predictions for only 3 of the 4 golds.
	if code, _, _ := pplug(t, "", "eval", "score", "--golds", filepath.Join(data, "dev_outputs.json"), "--preds", filepath.Join(out, "bm25_outputs.json")); code == 0 {
		t.Fatal("eval score accepted predictions for 3 of 4 golds")
	}
	sub := writeFile(t, t.TempDir(), "golds3.json", `{"task": "LaMP_7", "golds": [`+goldsJSON(t, filepath.Join(data, "dev_outputs.json"), 3)+`]}`)
	code, js, errs := pplug(t, "", "eval", "score", "--golds", sub, "--preds", filepath.Join(out, "bm25_outputs.json"), "--json")
	var sc map[string]any
	if code != 0 || json.Unmarshal([]byte(js), &sc) != nil {
		t.Fatalf("eval score: %d %s %s", code, js, errs)
	}
	if sc["rouge-1"] != res.Results[1].Scores["rouge-1"] || res.Results[1].Method != "bm25" {
		t.Fatalf("eval score gives %v, results.json %v", sc["rouge-1"], res.Results[1].Scores["rouge-1"])
	}

	// Without --plug the default methods are the plug-free ones; no golds,
	// no cache.
	out2 := filepath.Join(t.TempDir(), "out2")
	code, _, errs = pplug(t, "", "eval", "--task", "LaMP_7", "--questions", filepath.Join(data, "test_questions.json"),
		"-m", model, "--limit", "2", "-n", "4", "-t", "1", "-o", out2, "--no-cache")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	entries, _ := os.ReadDir(out2)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "bm25_outputs.json none_outputs.json recent_outputs.json results.json results.md" {
		t.Fatalf("files %v", names)
	}
}

func TestEvalNLL(t *testing.T) {
	data, plug := evalData(t)
	model := testenv.Stories260K(t)
	args := []string{"eval", "nll", "--task", "LaMP_7", "--questions", filepath.Join(data, "dev_questions.json"),
		"--golds", filepath.Join(data, "dev_outputs.json"), "-m", model, "--plug", plug, "-t", "1", "--no-cache"}
	code, out, errs := pplug(t, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, k := range []string{"own", "none", "other", "own_beats_none", "own_beats_other", "own_beats_both"} {
		if _, ok := r[k].(float64); !ok {
			t.Errorf("no %q in %s", k, out)
		}
	}
	if r["questions"] != 4.0 || r["tokens"].(float64) < 4 || r["task"] != "LaMP_7" {
		t.Fatalf("report %s", out)
	}
	// One user (--limit 2: the first user's two questions): no other.
	code, out, errs = pplug(t, "", append(args, "--limit", "2")...)
	if code != 0 || !strings.Contains(out, "own persona") || !strings.Contains(out, "one user only") || !strings.Contains(out, "2 questions") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
}

func TestEvalBadInputs(t *testing.T) {
	data, plug := evalData(t)
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	q := filepath.Join(data, "dev_questions.json")
	g := filepath.Join(data, "dev_outputs.json")
	// A plug for an LLM of another width.
	narrow, err := persona.NewPlug(64, 32, 1, persona.PlugOptions{})
	if err != nil {
		t.Fatal(err)
	}
	narrowPath := filepath.Join(dir, "narrow.gguf")
	if err := narrow.WriteFile(narrowPath); err != nil {
		t.Fatal(err)
	}
	fewGolds := writeFile(t, dir, "few.json", `{"task": "LaMP_7", "golds": [{"id": "5000", "output": "x"}]}`)
	badUTF8 := writeFile(t, dir, "bad.json", "[{\"id\": \"1\", \"input\": \"a\xffb\", \"profile\": [{\"id\": \"1\", \"text\": \"t\"}]}]")
	notJSON := writeFile(t, dir, "notjson.json", "[{\"id\": \"1\", ")
	base := []string{"eval", "-m", model, "-t", "1", "-n", "2", "--limit", "1", "-o", filepath.Join(dir, "out"), "--no-cache"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no questions", []string{"--task", "LaMP_7"}, "no questions given"},
		{"unknown task", []string{"--task", "LaMP_6", "--questions", q}, "LaMP_6"},
		{"missing questions file", []string{"--task", "LaMP_7", "--questions", filepath.Join(dir, "none.json")}, "no such file"},
		{"missing golds file", []string{"--task", "LaMP_7", "--questions", q, "--golds", filepath.Join(dir, "none.json")}, "no such file"},
		{"golds missing ids", []string{"--task", "LaMP_7", "--questions", q, "--golds", fewGolds}, "have no gold output"},
		{"golds of another task", []string{"--task", "LaMP_4", "--questions", q, "--golds", g}, "holds LaMP_7 golds"},
		{"unknown method", []string{"--task", "LaMP_7", "--questions", q, "--methods", "none,rag"}, `unknown method "rag"`},
		{"pplug without plug", []string{"--task", "LaMP_7", "--questions", q, "--methods", "none,pplug"}, "method pplug needs a Persona-Plug plug-in"},
		{"plug of another width", []string{"--task", "LaMP_7", "--questions", q, "--plug", narrowPath}, "n_embd 32"},
		{"not a plug", []string{"--task", "LaMP_7", "--questions", q, "--plug", q}, "plug"},
		{"invalid utf-8", []string{"--task", "LaMP_7", "--questions", badUTF8}, "invalid UTF-8"},
		{"invalid json", []string{"--task", "LaMP_7", "--questions", notJSON}, "invalid JSON"},
		{"bad k", []string{"--task", "LaMP_7", "--questions", q, "-k", "0"}, "-k must be positive"},
		{"negative limit", []string{"--task", "LaMP_7", "--questions", q, "--limit", "-1"}, "--limit"},
		{"no model", []string{"--task", "LaMP_7", "--questions", q, "-m", ""}, "no model given"},
		{"stray argument", []string{"--task", "LaMP_7", "--questions", q, "extra"}, "unexpected argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := pplug(t, "", append(append([]string(nil), base...), tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0 for %v", tc.args)
			}
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("stderr %q lacks %q", errs, tc.want)
			}
		})
	}
	nllBase := []string{"eval", "nll", "--task", "LaMP_7", "-m", model, "-t", "1", "--no-cache"}
	nllCases := []struct {
		name string
		args []string
		want string
	}{
		{"no plug", []string{"--questions", q, "--golds", g}, "no plug given"},
		{"no golds", []string{"--questions", q, "--plug", plug}, "no golds given"},
		{"golds missing ids", []string{"--questions", q, "--golds", fewGolds, "--plug", plug}, "have no gold output"},
		{"plug of another width", []string{"--questions", q, "--golds", g, "--plug", narrowPath}, "n_embd 32"},
		{"invalid utf-8", []string{"--questions", badUTF8, "--golds", g, "--plug", plug}, "invalid UTF-8"},
	}
	for _, tc := range nllCases {
		t.Run("nll "+tc.name, func(t *testing.T) {
			code, _, errs := pplug(t, "", append(append([]string(nil), nllBase...), tc.args...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q lacks %q", code, errs, tc.want)
			}
		})
	}
	for _, args := range [][]string{{}, {"-o", dir, "--users", "2"}, {"-o", dir, "--split", "1.5"}, {"-o", dir, "--items", "0"}} {
		if code, _, _ := pplug(t, "", append([]string{"eval", "synth-users"}, args...)...); code == 0 {
			t.Errorf("synth-users accepted %v", args)
		}
	}
}

// goldsJSON returns the first n golds of an outputs file as JSON elements.
func goldsJSON(t *testing.T, path string, n int) string {
	t.Helper()
	o, err := lamp.ReadOutputs(path)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, g := range o.Golds[:n] {
		b, err := g.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	return strings.Join(parts, ",")
}

// --chat wraps each prompt in the model's template (a random-weight model
// with the Phi-3 vocabulary and chat template).
func TestEvalChat(t *testing.T) {
	data, _ := evalData(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "phi.gguf")
	code, _, errs := pplug(t, "", "synth", "--arch", "llama", "--type", "q8_0", "--n-embd", "64", "--n-layer", "1",
		"--n-head", "4", "--n-head-kv", "4", "--n-ff", "128", "--n-ctx", "512", "--n-vocab", "0", "--vocab", testenv.Phi3Vocab(t), "-o", model)
	if code != 0 {
		t.Fatalf("synth: %s", errs)
	}
	positions := map[bool]float64{}
	for _, chat := range []bool{false, true} {
		out := filepath.Join(dir, "out"+map[bool]string{false: "plain", true: "chat"}[chat])
		args := []string{"eval", "--task", "LaMP_7", "--questions", filepath.Join(data, "dev_questions.json"), "-m", model,
			"--methods", "none,bm25", "--limit", "1", "-n", "3", "-t", "1", "-o", out}
		if chat {
			args = append(args, "--chat")
		}
		if code, _, errs := pplug(t, "", args...); code != 0 {
			t.Fatalf("chat %v: exit %d: %s", chat, code, errs)
		}
		var rep struct {
			Chat    bool
			Results []map[string]any
		}
		b, _ := os.ReadFile(filepath.Join(out, "results.json"))
		if err := json.Unmarshal(b, &rep); err != nil || rep.Chat != chat || len(rep.Results) != 2 {
			t.Fatalf("results.json: %v %s", err, b)
		}
		positions[chat] = rep.Results[0]["prompt_positions"].(float64)
	}
	if positions[true] <= positions[false] {
		t.Fatalf("the chat template added no tokens: %v", positions)
	}
}

// TestGenericTask: data in the LaMP layout that is no LaMP task (any
// input, profiles of text items, outputs naming no task) trains, evaluates
// (also a partial run, scored with --only-predicted), checks its NLL and
// generates; the input reaches the model as given.
func TestGenericTask(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	var qs, golds []string
	for u, who := range []string{"Lily", "Tom", "Sue", "Ben"} {
		var items []string
		for i := range 4 {
			items = append(items, fmt.Sprintf(`{"id": "%d", "text": "%s went to the park with the dog. %s liked it a lot."}`, i, who, who))
		}
		for j := range 2 {
			id := fmt.Sprintf("%d%d", u, j)
			qs = append(qs, fmt.Sprintf(`{"id": %q, "input": "note: Once upon a time, there was", "profile": [%s]}`, id, strings.Join(items, ",")))
			golds = append(golds, fmt.Sprintf(`{"id": %q, "output": "a child named %s."}`, id, who))
		}
	}
	q := writeFile(t, dir, "q.json", "["+strings.Join(qs, ",\n")+"]")
	o := writeFile(t, dir, "o.json", `{"golds": [`+strings.Join(golds, ",\n")+`]}`)
	plug := filepath.Join(dir, "p.gguf")
	cache := filepath.Join(dir, "cache")
	code, out, errs := pplug(t, "", "train", "-m", model, "--questions", q, "--outputs", o, "-o", plug, "--epochs", "1", "--batch", "4", "-t", "1", "--cache-dir", cache)
	if code != 0 {
		t.Fatalf("train: exit %d %s %s", code, out, errs)
	}
	if p, err := persona.ReadPlug(plug); err != nil || p.Task != "" && p.Task != "generic" {
		t.Fatalf("plug task %q %v", p.Task, err)
	}
	res := filepath.Join(dir, "res")
	code, out, errs = pplug(t, "", "eval", "--questions", q, "--golds", o, "-m", model, "--plug", plug, "--methods", "bm25,pplug", "-n", "6", "--limit", "3", "--out", res, "-t", "1", "--cache-dir", cache)
	if code != 0 || !strings.Contains(out, "generic") || !strings.Contains(out, "rouge-1") {
		t.Fatalf("eval: exit %d\n%s\n%s", code, out, errs)
	}
	preds := filepath.Join(res, "pplug_outputs.json")
	if code, _, errs := pplug(t, "", "eval", "score", "--golds", o, "--preds", preds); code == 0 || !strings.Contains(errs, "5 of 8 golds have no prediction") {
		t.Errorf("score of a partial run without --only-predicted: exit %d %s", code, errs)
	}
	code, out, errs = pplug(t, "", "eval", "score", "--golds", o, "--preds", preds, "--only-predicted", "--json")
	var s map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s["task"] != "generic" || s["n"] != 3.0 || s["unpredicted_golds"] != 5.0 || s["rouge-1"] == nil {
		t.Errorf("--only-predicted: exit %d %s %s", code, out, errs)
	}
	code, out, errs = pplug(t, "", "eval", "nll", "--questions", q, "--golds", o, "-m", model, "--plug", plug, "-t", "1", "--cache-dir", cache, "--json")
	if code != 0 || !strings.Contains(out, `"task": "generic"`) {
		t.Errorf("eval nll: exit %d %s %s", code, out, errs)
	}
	// generate --task generic: the whole input is the query and the prompt.
	code, _, errs = pplug(t, "", "generate", "-m", model, "--task", "generic", "--profile", q, "--question-id", "10", "-p", "note: Once upon a time, there was",
		"-n", "4", "--method", "bm25", "--verbose-prompt", "--cache-dir", cache)
	if code != 0 || !strings.Contains(errs, `\n\nnote: Once upon a time, there was"`) || !strings.Contains(errs, "Tom went to the park") {
		t.Errorf("generate --task generic: exit %d\n%s", code, errs)
	}
	// Labels: a generic classification task is scored by exact match.
	lg := writeFile(t, dir, "lg.json", `{"labels": ["yes", "no"], "golds": [{"id": "a", "output": "yes"}, {"id": "b", "output": "no"}]}`)
	lp := writeFile(t, dir, "lp.json", `{"golds": [{"id": "a", "output": "yes"}, {"id": "b", "output": "yes"}]}`)
	code, out, _ = pplug(t, "", "eval", "score", "--golds", lg, "--preds", lp, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s["accuracy"] != 0.5 {
		t.Errorf("labels: %d %s", code, out)
	}
}

// A plug's EOS bias reaches generation: generate and eval's pplug methods
// end at once with a huge bias, the methods without rows do not.
func TestPlugEOSBiasEndsGeneration(t *testing.T) {
	data, plugPath := evalData(t)
	model := testenv.Stories260K(t)
	p, err := persona.ReadPlug(plugPath)
	if err != nil {
		t.Fatal(err)
	}
	p.EOSBias = 100
	if err := p.WriteFile(plugPath); err != nil {
		t.Fatal(err)
	}
	qpath := filepath.Join(data, "dev_questions.json")
	qs, _ := lamp.ReadQuestions(qpath)
	cache := t.TempDir()
	code, gen, errs := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "8", "--temp", "0", "-t", "1",
		"--profile", qpath, "--question-id", qs[0].ID, "--task", "lamp7", "--plug", plugPath, "--cache-dir", cache)
	if code != 0 || strings.TrimSpace(gen) != "" {
		t.Fatalf("generate with an EOS bias of 100: exit %d, output %q, %s", code, gen, errs)
	}
	out := filepath.Join(t.TempDir(), "out")
	if code, _, errs := pplug(t, "", "eval", "--task", "LaMP_7", "--questions", qpath, "--golds", filepath.Join(data, "dev_outputs.json"),
		"-m", model, "--plug", plugPath, "--methods", "none,pplug", "--limit", "2", "-n", "6", "-t", "1", "--out", out, "--cache-dir", cache); code != 0 {
		t.Fatalf("eval: %s", errs)
	}
	rep, err := eval.ReadReport(filepath.Join(out, "results.json"))
	if err != nil || len(rep.Results) != 2 {
		t.Fatalf("report %+v %v", rep, err)
	}
	if none, pp := rep.Results[0], rep.Results[1]; none.EOSShare != 0 || none.MeanOutputTokens != 6 || pp.EOSShare != 1 || pp.MeanOutputTokens != 0 {
		t.Fatalf("none: EOS %.2f, %.1f tokens; pplug: EOS %.2f, %.1f tokens", none.EOSShare, none.MeanOutputTokens, pp.EOSShare, pp.MeanOutputTokens)
	}
}
