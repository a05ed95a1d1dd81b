package lamp

import (
	"bytes"
	"fmt"
	"io"

	"github.com/pplug/pplug/internal/atomicfile"
)

// WriteAtomic writes a file so that readers see either the old content or
// the complete new one: write calls fill a temporary file in the same
// directory, which is flushed to disk (fsync) and renamed over path. The
// directory is synced afterwards where the system allows it. The file keeps
// the mode of the file it replaces, or gets 0666 less the umask when new.
// On any error the temporary file is removed and path is left untouched.
func WriteAtomic(path string, write func(w io.Writer) error) error {
	return atomicfile.Write(path, write)
}

// EncodeOutputs writes o in the outputs-file format, one gold per line:
//
//	{"task":"LaMP_2","golds":[
//	{"id":"110","output":"comedy"},
//	...
//	]}
//
// Strings are written without HTML escaping; invalid UTF-8 is an error.
func EncodeOutputs(w io.Writer, o Outputs) error {
	var b bytes.Buffer
	b.WriteString(`{"task":`)
	if err := writeJSONString(&b, o.Task); err != nil {
		return fmt.Errorf("lamp: task name: %w", err)
	}
	if len(o.Labels) > 0 {
		b.WriteString(`,"labels":[`)
		for i, l := range o.Labels {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONString(&b, l); err != nil {
				return fmt.Errorf("lamp: label %d: %w", i, err)
			}
		}
		b.WriteByte(']')
	}
	b.WriteString(`,"golds":[`)
	for i, g := range o.Golds {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
		gb, err := g.MarshalJSON()
		if err != nil {
			return fmt.Errorf("lamp: element %d: %w", i, err)
		}
		b.Write(gb)
		if b.Len() > 1<<20 {
			if _, err := w.Write(b.Bytes()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if len(o.Golds) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteOutputs writes an outputs or predictions file atomically.
func WriteOutputs(path string, o Outputs) error {
	return WriteAtomic(path, func(w io.Writer) error { return EncodeOutputs(w, o) })
}

// EncodeQuestions writes qs as a questions file, one question per line.
// Profile fields are written as strings (see ProfileItem.MarshalJSON).
func EncodeQuestions(w io.Writer, qs []Question) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	for i, q := range qs {
		qb, err := q.MarshalJSON()
		if err != nil {
			return fmt.Errorf("lamp: element %d: %w", i, err)
		}
		sep := ",\n"
		if i == 0 {
			sep = "\n"
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(qb); err != nil {
			return err
		}
	}
	end := "]\n"
	if len(qs) > 0 {
		end = "\n]\n"
	}
	_, err := io.WriteString(w, end)
	return err
}

// WriteQuestions writes a questions file atomically.
func WriteQuestions(path string, qs []Question) error {
	return WriteAtomic(path, func(w io.Writer) error { return EncodeQuestions(w, qs) })
}
