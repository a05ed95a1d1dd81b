package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/pgtest"
	"github.com/pplug/pplug/internal/testenv"
)

// importProfile runs `pplug profile import` into db for user lily.
func importProfile(t *testing.T, db, prof string, extra ...string) (int, string, string) {
	t.Helper()
	args := append([]string{"profile", "import", "--profiles", db, "--user", "lily", "--profile", prof}, extra...)
	return pplug(t, "", args...)
}

// An id names one item: importing an id the user has is an error naming
// it and the flags that replace; --upsert and --replace replace.
// Both stores: a SQLite file and a PostgreSQL URL.
func TestImportRefusesExistingIDs(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testImportRefusesExistingIDs(t, filepath.Join(t.TempDir(), "p.db")) })
	t.Run("postgres", func(t *testing.T) { testImportRefusesExistingIDs(t, pgtest.Shared(t).NewDatabase()) })
}

func testImportRefusesExistingIDs(t *testing.T, db string) {
	prof := filepath.Join("..", "..", "examples", "profiles", "lily.json")
	if code, out, errs := importProfile(t, db, prof); code != 0 || !strings.Contains(out, "imported 8 items") {
		t.Fatalf("first import: %d %s %s", code, out, errs)
	}
	code, out, errs := importProfile(t, db, prof)
	if code != 1 || !strings.Contains(errs, `item "1"`) || !strings.Contains(errs, "--upsert") || !strings.Contains(errs, "--replace") {
		t.Fatalf("second import: exit %d %s %s", code, out, errs)
	}
	for _, flag := range []string{"--upsert", "--replace"} {
		if code, out, errs := importProfile(t, db, prof, flag); code != 0 || !strings.Contains(out, "imported 8 items into user \"lily\" (8 items in all)") {
			t.Errorf("%s: %d %s %s", flag, code, out, errs)
		}
	}
	if code, _, errs := importProfile(t, db, prof, "--upsert", "--replace"); code != 2 || !strings.Contains(errs, "not both") {
		t.Errorf("--upsert --replace: %d %s", code, errs)
	}
	long := strings.Repeat("u", 1<<20)
	if code, _, errs := pplug(t, "", "profile", "import", "--profiles", db, "--user", long, "--profile", prof); code != 2 || len(errs) > 1000 {
		t.Errorf("a 1 MB --user: exit %d, %d bytes of stderr", code, len(errs))
	}
}

// A file with one id twice is the same error for import and generate,
// naming both lines; nothing is imported.
func TestDuplicateIDsFailImportAndGenerate(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	prof := writeFile(t, dir, "dup.jsonl", "{\"id\": \"7\", \"text\": \"Lily ran.\"}\n{\"id\": \"8\", \"text\": \"Lily sat.\"}\n{\"id\": \"7\", \"text\": \"Lily sang.\"}\n")
	want := `item 0 (line 1) and item 2 (line 3) both have id "7"`
	if code, out, errs := importProfile(t, db, prof); code != 1 || !strings.Contains(errs, want) {
		t.Errorf("import: exit %d %s %s", code, out, errs)
	}
	code, out, errs := pplug(t, "", "generate", "-m", testenv.Stories260K(t), "-p", "Once", "-n", "4", "--profile", prof)
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("generate: exit %d %s %s", code, out, errs)
	}
	bad := writeFile(t, dir, "badid.jsonl", fmt.Sprintf("{\"text\": \"a\"}\n{\"id\": %q, \"text\": \"b\"}\n", strings.Repeat("i", 300)))
	if code, _, errs := importProfile(t, db, bad); code != 1 || !strings.Contains(errs, "item 1 (line 2)") || !strings.Contains(errs, "at most 256") && !strings.Contains(errs, "1 to 256") {
		t.Errorf("a 300-byte id: exit %d %s", code, errs)
	}
}

// Import says what it dropped and why, on stderr: the items over
// --max-items (the newest are kept, as generate keeps them), items without
// usable text by reason; a file where nothing is usable names the reason.
func TestImportSaysWhatWasDropped(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	var b strings.Builder
	for i := range 600 {
		fmt.Fprintf(&b, "{\"text\": \"Lily had day %d.\", \"date\": \"2020-01-01T00:%02d:%02dZ\"}\n", i, i/60, i%60)
	}
	for i := range 3 {
		fmt.Fprintf(&b, "{\"text\": %d}\n", i)
	}
	big := writeFile(t, dir, "big.jsonl", b.String())
	code, out, errs := importProfile(t, db, big)
	for _, want := range []string{
		`3 items: \"text\" is a number (a string is needed); item skipped (item 600 (line 601), item 601 (line 602), item 602 (line 603))`,
		"kept 512 of 600 usable items, the most recent by date; 88 dropped (--max-items 512; pass a larger --max-items to keep more)",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if code != 0 || !strings.Contains(out, "imported 512 items") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if code, out, errs := importProfile(t, db, big, "--max-items", "1000", "--replace"); code != 0 || !strings.Contains(out, "imported 600 items") || strings.Contains(errs, "kept") {
		t.Errorf("--max-items 1000: exit %d %s %s", code, out, errs)
	}
	numbers := writeFile(t, dir, "numbers.jsonl", "{\"text\": 1}\n{\"text\": 2}\n")
	if code, _, errs := importProfile(t, db, numbers); code != 1 || !strings.Contains(errs, `all 2 items were skipped: 2 items: "text" is a number`) {
		t.Errorf("numeric texts: exit %d %s", code, errs)
	}
	plain := writeFile(t, dir, "plain.jsonl", "{\"text\": \"a\", \"date\": \"2020-01-01\"}\n")
	if code, _, errs := importProfile(t, db, plain, "--fields", "title"); code != 1 || !strings.Contains(errs, `--fields title: `) || !strings.Contains(errs, `no item has a field title; fields seen: "date", "text"`) {
		t.Errorf("--fields title: exit %d %s", code, errs)
	}
}

// A PostgreSQL URL that does not parse is a usage error (exit 2); one that
// names no reachable server fails before any work (exit 1, in serve
// before the model loads); neither shows the password.
func TestProfilesURLErrors(t *testing.T) {
	prof := filepath.Join("..", "..", "examples", "profiles", "lily.json")
	model := testenv.Stories260K(t)
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{"postgres://ann:s3cret@127.0.0.1:port/db", 2, "--profiles: profile database postgres://"},
		{"postgresql://ann:s3cret@127.0.0.1:1/db?connect_timeout=2", 1, "profile database postgresql://ann:xxxxx@127.0.0.1:1/db"},
	} {
		for _, args := range [][]string{
			{"profile", "import", "--profiles", tc.url, "--user", "lily", "--profile", prof},
			{"serve", "-m", model, "--profiles", tc.url, "--port", "0"},
		} {
			code, _, errs := pplug(t, "", args...)
			if code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, "s3cret") {
				t.Errorf("%s %s: exit %d, %s", args[0], tc.url, code, errs)
			}
		}
	}
}
