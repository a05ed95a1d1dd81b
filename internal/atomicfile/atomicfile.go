// Package atomicfile writes files so that readers never see a partial one:
// the content goes to a temporary file in the same folder, which is synced
// and renamed over the destination.
package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write creates or replaces path with what write produces. The file keeps
// the permissions of the file it replaces (0644 for a new one). On any
// error the destination is left as it was. Errors name path, never the
// hidden temporary file.
func Write(path string, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return named(path, "create", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = named(path, "", err)
		}
	}()
	bw := bufio.NewWriterSize(targetWriter{f: f, path: path}, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if st, serr := os.Stat(path); serr == nil && st.Mode().IsRegular() {
		mode = st.Mode().Perm()
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = &fs.PathError{Op: "replace", Path: path, Err: le.Err}
		}
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // best effort: not every system can sync a directory
		d.Close()
	}
	return nil
}

// targetWriter writes to the temporary file and reports its errors under
// the destination's name, so that they read right however the caller
// wraps them.
type targetWriter struct {
	f    *os.File
	path string
}

func (w targetWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = &fs.PathError{Op: pe.Op, Path: w.path, Err: pe.Err}
		}
	}
	return n, err
}

// named makes an error about the temporary file name path instead. The
// write callback's own errors pass through: their I/O errors already name
// path (see targetWriter).
func named(path, op string, err error) error {
	if pe, ok := err.(*fs.PathError); ok && pe.Path != path {
		if op == "" {
			op = pe.Op
		}
		return &fs.PathError{Op: op, Path: path, Err: pe.Err}
	}
	return err
}
