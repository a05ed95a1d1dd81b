package missing

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	_, err := os.Open("/no/such/file")
	got := File(err, "how")
	if !errors.Is(got, fs.ErrNotExist) || !strings.HasSuffix(got.Error(), "no such file or directory (how)") {
		t.Fatalf("%v", got)
	}
	other := errors.New("permission denied")
	if File(other, "how") != other || File(nil, "how") != nil {
		t.Fatal("an error that is not a missing file was changed")
	}
}
