package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	scripts := map[string]string{}
	for sh, want := range map[string][]string{
		"bash": {"complete -o bashdefault -o default -F _pplug_complete pplug", "--generate-bash-completion"},
		"zsh":  {"#compdef pplug", "compdef _pplug pplug", "--generate-bash-completion"},
		"fish": {"complete -c pplug", "__fish_pplug_no_subcommand", "-a 'bench'", "-a 'embed'", "-l n-depth -s d", "-l n-gpu-layers -o ngl"},
	} {
		code, out, errs := pplug(t, "", "completion", sh)
		if code != 0 {
			t.Fatalf("completion %s: exit %d: %s", sh, code, errs)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("completion %s lacks %q:\n%s", sh, w, out)
			}
		}
		scripts[sh] = filepath.Join(dir, "pplug."+sh)
		if err := os.WriteFile(scripts[sh], []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		if code, _, _ := pplug(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the bash script")
	}
	if out, err := exec.Command(bash, "-n", scripts["bash"]).CombinedOutput(); err != nil {
		t.Fatalf("bash -n rejects the script: %v\n%s", err, out)
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command(zsh, "-n", scripts["zsh"]).CombinedOutput(); err != nil {
			t.Fatalf("zsh -n rejects the script: %v\n%s", err, out)
		}
	}
	// The script completes against the program: a pplug on PATH that is
	// this test binary running main (see TestMain).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	wrapper := "#!/bin/sh\nPPLUG_RUN_MAIN=1 exec '" + exe + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "pplug"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		script := "source " + scripts["bash"] + "\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=$((${#COMP_WORDS[@]}-1))\n" +
			"_pplug_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command(bash, "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completing %v: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("pplug", "be"); strings.Join(got, " ") != "bench" {
		t.Errorf("pplug be<TAB>: %q, want bench", got)
	}
	if got := complete("pplug", "bench", "--n-d"); strings.Join(got, " ") != "--n-depth" {
		t.Errorf("pplug bench --n-d<TAB>: %q, want --n-depth", got)
	}
	if got := complete("pplug", "emb"); strings.Join(got, " ") != "embed" {
		t.Errorf("pplug emb<TAB>: %q, want embed", got)
	}
}
