package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/pplug/pplug/internal/atomicfile"
)

// ErrDamagedLastLine: a JSON Lines profile ends with an incomplete record
// (an interrupted write). Load skips it with a warning; Append refuses to
// bury it under a new line, where it would break loading.
var ErrDamagedLastLine = errors.New("the last line is an incomplete record (an interrupted write?)")

// Append adds one item (a flat object of string fields) to a plain profile
// file: a line at the end of JSON Lines, or a new element of a JSON array
// (the file is rewritten atomically). LaMP question files are refused: they
// belong to a benchmark.
//
// An append is all or nothing: when a write fails (a full disk), the file is
// left as it was. Appends from several processes are serialised with a lock
// file beside the profile (see lockPath), so none is lost.
func Append(path string, format Format, fields map[string]string) error {
	for k, v := range fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("append to profile: field %q is not valid UTF-8", k)
		}
	}
	if format != FormatJSONL && format != FormatArray {
		return errors.New("append to profile: only plain profiles (a JSON array or JSON Lines of items) can grow; this one is a LaMP question file")
	}
	item, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	// Through a symbolic link, the file it points to grows (and is locked).
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	unlock, err := lockProfile(path, false)
	if err != nil {
		return fmt.Errorf("append to profile %s: %w", path, err)
	}
	defer unlock()
	if format == FormatJSONL {
		err = appendLine(path, item)
	} else {
		err = appendElement(path, item)
	}
	if err != nil {
		return fmt.Errorf("append to profile %s: %w", path, err)
	}
	return nil
}

// appendFile is what appendLine needs of the file; tests inject failures.
type appendFile interface {
	io.Writer
	io.ReaderAt
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

var openAppendFile = func(path string) (appendFile, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
}

// appendLine writes one record line at the end of a JSON Lines file, or
// nothing: a failed write is cut off again.
func appendLine(path string, item []byte) (err error) {
	f, err := openAppendFile(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	rec := make([]byte, 0, len(item)+2)
	if size > 0 {
		// The last record must be whole before another line goes after
		// it, where it would break loading.
		start, end, err := lastRecord(f, size)
		if err != nil {
			return err
		}
		if start >= 0 {
			last := make([]byte, end-start)
			if _, err := f.ReadAt(last, start); err != nil {
				return err
			}
			if start == 0 {
				last = bytes.TrimPrefix(last, utf8BOM) // as Load reads it
			}
			if !json.Valid(last) {
				line, _ := lineOf(f, start)
				return fmt.Errorf("line %d: %w; complete or delete that line, then try again", line, ErrDamagedLastLine)
			}
		}
		if end, err := endsWithNewline(f, size); err != nil {
			return err
		} else if !end {
			rec = append(rec, '\n')
		}
	}
	rec = append(append(rec, item...), '\n')
	_, err = f.Write(rec)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// All or nothing: cut what part of the record reached the file.
		if terr := f.Truncate(size); terr != nil {
			return fmt.Errorf("%w; removing the partial record failed too: %w (the last line of the file is incomplete)", err, terr)
		}
		_ = f.Sync()
		return err
	}
	return nil
}

// lastRecord returns the span [start, end) of the last line of a file of
// size bytes that is not blank, without its surrounding blanks; start is -1
// when every line is blank.
func lastRecord(r io.ReaderAt, size int64) (start, end int64, err error) {
	isBlank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	buf := make([]byte, 4096)
	end = -1
	for pos := size; pos > 0; {
		n := min(int64(len(buf)), pos)
		chunk := buf[:n]
		if _, err := r.ReadAt(chunk, pos-n); err != nil && err != io.EOF {
			return -1, -1, err
		}
		for i := n - 1; i >= 0; i-- {
			c := chunk[i]
			switch {
			case end < 0 && !isBlank(c):
				end = pos - n + i + 1
			case end >= 0 && c == '\n':
				return pos - n + i + 1, end, nil
			}
		}
		pos -= n
	}
	if end < 0 {
		return -1, -1, nil
	}
	return 0, end, nil
}

// endsWithNewline reports whether a non-empty file of size bytes ends with
// a newline.
func endsWithNewline(r io.ReaderAt, size int64) (bool, error) {
	var b [1]byte
	if _, err := r.ReadAt(b[:], size-1); err != nil && err != io.EOF {
		return false, err
	}
	return b[0] == '\n', nil
}

// lineOf is the 1-based line of a byte offset.
func lineOf(r io.ReaderAt, off int64) (int, error) {
	line := 1
	buf := make([]byte, 64<<10)
	for pos := int64(0); pos < off; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), off-pos)], pos)
		line += bytes.Count(buf[:n], []byte{'\n'})
		pos += int64(n)
		if err != nil && err != io.EOF {
			return line, err
		}
		if n == 0 {
			break
		}
	}
	return line, nil
}

// utf8BOM is the byte order mark some editors put at the start of a UTF-8
// file; Load skips it, and Append keeps it.
var utf8BOM = []byte("\xef\xbb\xbf")

// appendElement rewrites a JSON array file (atomically) with one more
// element.
func appendElement(path string, item []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	body, hadBOM := bytes.CutPrefix(b, utf8BOM)
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return err
	}
	items = append(items, item)
	return atomicfile.Write(path, func(w io.Writer) error {
		var buf bytes.Buffer
		if hadBOM {
			buf.Write(utf8BOM)
		}
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
