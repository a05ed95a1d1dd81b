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
		start, err := lastLineStart(f, size)
		if err != nil {
			return err
		}
		if start >= 0 {
			// The file does not end with a newline: the last line must be
			// a whole record before another line goes after it.
			last := make([]byte, size-start)
			if _, err := f.ReadAt(last, start); err != nil {
				return err
			}
			if len(bytes.TrimSpace(last)) > 0 && !json.Valid(last) {
				line, _ := lineOf(f, start)
				return fmt.Errorf("line %d: %w; complete or delete that line, then try again", line, ErrDamagedLastLine)
			}
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

// lastLineStart returns where the unterminated last line of a file of size
// bytes starts, or -1 when the file ends with a newline.
func lastLineStart(r io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 4096)
	end := size
	for end > 0 {
		n := min(int64(len(buf)), end)
		chunk := buf[:n]
		if _, err := r.ReadAt(chunk, end-n); err != nil && err != io.EOF {
			return 0, err
		}
		if end == size && chunk[n-1] == '\n' {
			return -1, nil
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
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

// appendElement rewrites a JSON array file (atomically) with one more
// element.
func appendElement(path string, item []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return err
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
