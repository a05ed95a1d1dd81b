package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/pplug/pplug/internal/atomicfile"
)

// optState is what resuming needs beyond the plug: AdamW's moments, the
// step counter and where in the data the run stood.
type optState struct {
	Step, Epoch, Batch int
	Seed               uint64
	M, V               map[int][]float32
}

const optMagic = "PPLUGOPT"

// writeOptState writes the state atomically, with a trailing checksum.
func writeOptState(path string, st optState) error {
	var b bytes.Buffer
	b.WriteString(optMagic)
	binary.Write(&b, binary.LittleEndian, []uint64{1, uint64(st.Step), uint64(st.Epoch), uint64(st.Batch), st.Seed, uint64(len(st.M))})
	for id := range 64 {
		m, ok := st.M[id]
		if !ok {
			continue
		}
		binary.Write(&b, binary.LittleEndian, []uint64{uint64(id), uint64(len(m))})
		binary.Write(&b, binary.LittleEndian, m)
		binary.Write(&b, binary.LittleEndian, st.V[id])
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(b.Bytes())
		return err
	})
}

// readOptState reads and checks a state file against the graph's
// parameters.
func readOptState(path string, g *Graph) (optState, error) {
	var st optState
	raw, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("optimizer state: %w", err)
	}
	if len(raw) < len(optMagic)+48+32 {
		return st, errors.New("optimizer state: file too short")
	}
	body, sum := raw[:len(raw)-32], raw[len(raw)-32:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return st, errors.New("optimizer state: checksum mismatch (damaged file)")
	}
	if string(body[:len(optMagic)]) != optMagic {
		return st, errors.New("optimizer state: not a pplug optimizer state")
	}
	r := bytes.NewReader(body[len(optMagic):])
	hdr := make([]uint64, 6)
	if err := binary.Read(r, binary.LittleEndian, hdr); err != nil || hdr[0] != 1 {
		return st, errors.New("optimizer state: unsupported version")
	}
	st = optState{Step: int(hdr[1]), Epoch: int(hdr[2]), Batch: int(hdr[3]), Seed: hdr[4], M: map[int][]float32{}, V: map[int][]float32{}}
	for range hdr[5] {
		var idn [2]uint64
		if err := binary.Read(r, binary.LittleEndian, idn[:]); err != nil {
			return st, errors.New("optimizer state: truncated")
		}
		id, n := int(idn[0]), int(idn[1])
		want := len(g.Param(id))
		if want == 0 || n != want {
			return st, fmt.Errorf("optimizer state: %s has %d values, the graph %d (was the checkpoint made with other options?)", paramName(id), n, want)
		}
		mv := make([]uint32, 2*n)
		if err := binary.Read(r, binary.LittleEndian, mv); err != nil {
			return st, errors.New("optimizer state: truncated")
		}
		m, v := make([]float32, n), make([]float32, n)
		for i := range n {
			m[i], v[i] = math.Float32frombits(mv[i]), math.Float32frombits(mv[n+i])
		}
		st.M[id], st.V[id] = m, v
	}
	for _, id := range g.ParamIDs() {
		if _, ok := st.M[id]; !ok {
			return st, fmt.Errorf("optimizer state: no moments for %s (was the checkpoint made with other options?)", paramName(id))
		}
	}
	return st, nil
}
