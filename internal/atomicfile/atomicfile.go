// Package atomicfile writes files so that readers never see a partial one:
// the content goes to a temporary file in the same folder, which is synced
// and renamed over the destination.
package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// Write creates or replaces path with what write produces. The file keeps
// the permissions of the file it replaces; a new one gets 0666 less the
// umask, as os.Create gives. On any error the destination is left as it
// was. Errors name path, never the hidden temporary file.
func Write(path string, write func(w io.Writer) error) error {
	st, err := Stage(path, write)
	if err != nil {
		return err
	}
	return st.Commit()
}

// Staged is the new content of a file, written in full and synced to a
// temporary file beside it, that has not replaced the file yet. Several
// staged files can be committed together once all of them were written
// (see train's checkpoint pairs).
type Staged struct {
	path, tmp string
	nosync    bool // WriteUnsynced: the folder is not synced either
}

// Stage writes what write produces to a temporary file in path's folder
// and syncs it; Commit puts it in place, Abort drops it. On error nothing
// is left behind. Errors name path, never the temporary file.
func Stage(path string, write func(w io.Writer) error) (*Staged, error) {
	return stage(path, write, true)
}

// WriteUnsynced is Write without syncing the file or its folder: readers
// still never see a partial file, but a crash may leave an empty or torn
// one. Only for files whose content carries its own checksum and can be
// made again (caches): syncing each of thousands of small files costs far
// more than writing them.
func WriteUnsynced(path string, write func(w io.Writer) error) error {
	st, err := stage(path, write, false)
	if err != nil {
		return err
	}
	st.nosync = true
	return st.Commit()
}

func stage(path string, write func(w io.Writer) error, sync bool) (_ *Staged, err error) {
	f, err := createTemp(path)
	if err != nil {
		return nil, named(path, "create", err)
	}
	st := &Staged{path: path, tmp: f.Name()}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(st.tmp)
			err = named(path, "", err)
		}
	}()
	bw := bufio.NewWriterSize(targetWriter{f: f, path: path}, 1<<20)
	if err = write(bw); err != nil {
		return nil, err
	}
	if err = bw.Flush(); err != nil {
		return nil, err
	}
	if err = keepMode(f, path); err != nil {
		return nil, err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return nil, err
		}
	}
	if err = f.Close(); err != nil {
		return nil, err
	}
	return st, nil
}

// createTemp creates a new, empty temporary file beside path with mode
// 0666, which the umask narrows as it does for any file the user creates
// (os.CreateTemp would give 0600 whatever the umask).
func createTemp(path string) (*os.File, error) {
	prefix := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	for range 100 {
		name := prefix + strconv.FormatUint(rand.Uint64(), 36)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, &fs.PathError{Op: "create", Path: path, Err: errors.New("no free temporary name beside it")}
}

// keepMode gives the staged file f the permissions of the regular file it
// will replace; a new file keeps the mode it was created with.
func keepMode(f *os.File, path string) error {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return f.Chmod(fi.Mode().Perm())
}

// Path is the file the staged content is for.
func (s *Staged) Path() string { return s.path }

// Commit renames the staged content over its file and syncs the folder.
// On error the file is left as it was and the staged content is dropped.
func (s *Staged) Commit() error {
	if err := s.place("replace", os.Rename); err != nil {
		os.Remove(s.tmp)
		return err
	}
	return nil
}

// ErrExists: CommitNew found the file there already.
var ErrExists = fs.ErrExist

// CommitNew puts the staged content in place only if no file is there:
// it never replaces one, even one that appeared after a check for it
// (the content is hard-linked into place, which fails on an existing
// name). It returns an error wrapping ErrExists when the name is taken.
func (s *Staged) CommitNew() error {
	defer os.Remove(s.tmp)
	return s.place("create", os.Link)
}

// place moves the staged content to its file with move (rename or link),
// naming the file in an error (op), and syncs the folder.
func (s *Staged) place(op string, move func(from, to string) error) error {
	if err := move(s.tmp, s.path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = &fs.PathError{Op: op, Path: s.path, Err: le.Err}
		}
		return err
	}
	if s.nosync {
		return nil
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync() // best effort: not every system can sync a directory
		d.Close()
	}
	return nil
}

// WriteNew creates path with what write produces, atomically, and never
// replaces an existing file (see CommitNew).
func WriteNew(path string, write func(w io.Writer) error) error {
	st, err := Stage(path, write)
	if err != nil {
		return err
	}
	return st.CommitNew()
}

// Abort drops the staged content; the file is left as it was.
func (s *Staged) Abort() { os.Remove(s.tmp) }

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
