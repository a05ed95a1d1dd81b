package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/pplug/pplug/internal/atomicfile"
)

// Append adds one item (a flat object of string fields) to a plain profile
// file: a line at the end of JSON Lines, or a new element of a JSON array
// (the file is rewritten atomically). LaMP question files are refused: they
// belong to a benchmark.
func Append(path string, format Format, fields map[string]string) error {
	for k, v := range fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("append to profile: field %q is not valid UTF-8", k)
		}
	}
	item, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	switch format {
	case FormatJSONL:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("append to profile: %w", err)
		}
		// Start a new line if the file does not end with one.
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			last := make([]byte, 1)
			if r, err := os.Open(path); err == nil {
				_, _ = r.ReadAt(last, st.Size()-1)
				r.Close()
			}
			if last[0] != '\n' {
				item = append([]byte{'\n'}, item...)
			}
		}
		_, err = f.Write(append(item, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("append to profile: %w", err)
		}
		return nil
	case FormatArray:
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("append to profile: %w", err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return fmt.Errorf("append to profile: %w", err)
		}
		items = append(items, item)
		return atomicfile.Write(path, func(w io.Writer) error {
			var buf bytes.Buffer
			buf.WriteString("[\n")
			for i, it := range items {
				buf.WriteString("  ")
				buf.Write(bytes.TrimSpace(it))
				if i < len(items)-1 {
					buf.WriteByte(',')
				}
				buf.WriteByte('\n')
			}
			buf.WriteString("]\n")
			_, err := w.Write(buf.Bytes())
			return err
		})
	}
	return errors.New("append to profile: only plain profiles (a JSON array or JSON Lines of items) can grow; this one is a LaMP question file")
}
