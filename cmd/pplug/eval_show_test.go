package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// TestEvalShow: eval show answers the first question of each of the first
// N users with none and the plug's method, next to the gold; --ids picks
// questions; an unknown id is a usage error.
func TestEvalShow(t *testing.T) {
	data, plug := evalData(t)
	model := testenv.Stories260K(t)
	base := []string{"eval", "show", "--task", "LaMP_7", "--questions", filepath.Join(data, "dev_questions.json"),
		"--golds", filepath.Join(data, "dev_outputs.json"), "-m", model, "--plug", plug, "-n", "6", "-t", "1", "--cache-dir", t.TempDir()}
	code, out, errs := pplug(t, "", append(base, "--users", "2")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	heads := regexp.MustCompile(`(?m)^== question (\S+) \((\d) of 2\), input: .+$`).FindAllStringSubmatch(out, -1)
	if len(heads) != 2 || heads[0][1] == heads[1][1] {
		t.Fatalf("want the first question of 2 users:\n%s", out)
	}
	for _, label := range []string{"\n  none   ", "\n  pplug  ", "\n  gold   "} {
		if strings.Count(out, label) != 2 {
			t.Fatalf("want one %q line per question:\n%s", label, out)
		}
	}
	// The two dev users have two questions each: the second user's
	// first question is the third one.
	code, out, errs = pplug(t, "", append(base, "--ids", heads[1][1], "--methods", "bm25")...)
	if code != 0 || strings.Count(out, "== question") != 1 || !strings.Contains(out, "\n  bm25  ") || strings.Contains(out, "pplug") {
		t.Fatalf("--ids: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := pplug(t, "", append(base, "--ids", "no-such-id")...); code != 2 || !strings.Contains(errs, "no-such-id") {
		t.Fatalf("an unknown id: exit %d, %s", code, errs)
	}
}
