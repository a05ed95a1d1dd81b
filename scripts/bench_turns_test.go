package scripts_test

import (
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

func TestBenchTurnsUsage(t *testing.T) {
	model := testenv.Stories260K(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no MODEL given"},
		{[]string{model, "--turns", "0"}, 2, "--turns 0: want a whole number >= 1"},
		{[]string{model, "-t"}, 2, "-t needs a value"},
		{[]string{model, "--bogus", "1"}, 2, "unknown option --bogus"},
		{[]string{"/nonexistent/m.gguf"}, 1, "model /nonexistent/m.gguf not found"},
		{[]string{model}, 1, "/nonexistent/pplug is missing"},
	}
	for _, c := range cases {
		_, stderr, code := runTool(t, []string{"PPLUG=/nonexistent/pplug"}, "scripts/bench-turns.sh", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("bench-turns.sh %q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
