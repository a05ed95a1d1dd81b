package main

import (
	"os"
	"testing"

	"github.com/pplug/pplug/internal/pgtest"
)

// TestMain lets the test binary stand in for pplug when PPLUG_RUN_MAIN=1,
// so terminal tests can start it under tmux without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("PPLUG_RUN_MAIN") == "1" {
		os.Exit(run(append([]string{"pplug"}, os.Args[1:]...), os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}
