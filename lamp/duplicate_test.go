package lamp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestReadQuestionsWarnsOnDuplicateIDs: questions sharing an id are read,
// with one warning that names the ids.
func TestReadQuestionsWarnsOnDuplicateIDs(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	dir := t.TempDir()
	p := writeFile(t, dir, "q.json", `[{"id": "7", "input": "a"}, {"id": "8", "input": "b"}, {"id": 7, "input": "c"},
		{"id": "9", "input": "d"}, {"id": "8", "input": "e"}, {"id": "7", "input": "f"}]`)
	qs, err := ReadQuestions(p)
	if err != nil || len(qs) != 6 {
		t.Fatalf("%d questions, err %v", len(qs), err)
	}
	out := logs.String()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, `\"7\", \"8\"`) || strings.Contains(out, `\"9\"`) || !strings.Contains(out, "q.json") {
		t.Fatalf("want one warning naming the file and ids 7 and 8 only, got:\n%s", out)
	}
	logs.Reset()
	if _, err := ReadQuestions(writeFile(t, dir, "ok.json", sampleQuestions)); err != nil || logs.Len() != 0 {
		t.Fatalf("a file without duplicates: err %v, log %q", err, logs.String())
	}
}
