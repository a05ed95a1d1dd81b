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
	"strconv"
	"strings"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/traingraph"
)

// optState is what resuming needs beyond the plug: AdamW's moments, the
// step counter and where in the data the run stood.
type optState struct {
	Step, Epoch, Batch int
	Seed               uint64
	M, V               map[traingraph.Param][]float32
	// PlugSum is the Checksum of the plug saved with the state: a plug and
	// a state pair only when it matches. Version 1 files have none
	// (HasSum false); their pairing is checked by the step alone.
	PlugSum [32]byte
	HasSum  bool
}

const optMagic = "PPLUGOPT"

// optVersion is the state format written: 2 adds the plug's checksum.
const optVersion = 2

// encode writes the state with a trailing checksum.
func (st optState) encode(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(optMagic)
	binary.Write(&b, binary.LittleEndian, []uint64{optVersion, uint64(st.Step), uint64(st.Epoch), uint64(st.Batch), st.Seed, uint64(len(st.M))})
	b.Write(st.PlugSum[:])
	for id := range traingraph.Param(64) {
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
	_, err := w.Write(b.Bytes())
	return err
}

// matches checks that the state was saved together with plug.
func (st optState) matches(plug *persona.Plug) error {
	steps, hasSteps := plug.Meta["steps"]
	if hasSteps && steps != strconv.Itoa(st.Step) {
		return fmt.Errorf("the plug was saved at step %s but its optimizer state at step %d: they belong to different checkpoints", steps, st.Step)
	}
	if st.HasSum {
		if sum := plug.Checksum(); sum != st.PlugSum {
			return fmt.Errorf("the optimizer state (step %d) was saved with a plug of checksum %x, this plug's is %x: they belong to different checkpoints", st.Step, st.PlugSum[:6], sum[:6])
		}
	} else if !hasSteps {
		return errors.New("neither the plug nor its optimizer state tells which checkpoint it belongs to")
	}
	return nil
}

// checkpointWriter wraps the writer of each half of a checkpoint; tests
// replace it to inject write failures (a full disk).
var checkpointWriter = func(dst string, w io.Writer) io.Writer { return w }

// writePair writes a plug (path) and its optimizer state (path.opt) as a
// pair or not at all: both are written in full to temporary files in the
// same folder first, and renamed into place only when both succeeded. If
// either write fails, nothing is left behind and an existing pair at path
// is untouched. Should the second rename fail, the new state is removed
// again; the pair's shared identity (the state records the plug's step and
// checksum) keeps a mismatched pair from ever being resumed. place puts
// each staged file where it goes: (*atomicfile.Staged).Commit replaces a
// file there, CommitNew refuses to (a rescue file never replaces one).
func writePair(path string, plug *persona.Plug, st optState, place func(*atomicfile.Staged) error) error {
	optPath := path + ".opt"
	stage := func(dst string, write func(w io.Writer) error) (*atomicfile.Staged, error) {
		st, err := atomicfile.Stage(dst, func(w io.Writer) error { return write(checkpointWriter(dst, w)) })
		if err != nil && !strings.Contains(err.Error(), dst) {
			err = fmt.Errorf("write %s: %w", dst, err)
		}
		return st, err
	}
	opt, err := stage(optPath, st.encode)
	if err != nil {
		return err
	}
	pl, err := stage(path, plug.Encode)
	if err != nil {
		opt.Abort()
		return err
	}
	if err := place(opt); err != nil {
		pl.Abort()
		return err
	}
	if err := place(pl); err != nil {
		// The new state must not stay beside an older plug.
		os.Remove(optPath)
		return err
	}
	return nil
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
	if err := binary.Read(r, binary.LittleEndian, hdr); err != nil || hdr[0] < 1 || hdr[0] > optVersion {
		return st, errors.New("optimizer state: unsupported version")
	}
	st = optState{Step: int(hdr[1]), Epoch: int(hdr[2]), Batch: int(hdr[3]), Seed: hdr[4], M: map[traingraph.Param][]float32{}, V: map[traingraph.Param][]float32{}}
	if hdr[0] >= 2 {
		if _, err := io.ReadFull(r, st.PlugSum[:]); err != nil {
			return st, errors.New("optimizer state: truncated")
		}
		st.HasSum = true
	}
	if hdr[1] > math.MaxInt32 || hdr[2] > math.MaxInt32 || hdr[3] > math.MaxInt32 || hdr[5] > 64 {
		return st, errors.New("optimizer state: implausible header (damaged file?)")
	}
	for range hdr[5] {
		var idn [2]uint64
		if err := binary.Read(r, binary.LittleEndian, idn[:]); err != nil {
			return st, errors.New("optimizer state: truncated")
		}
		if idn[0] >= uint64(traingraph.NParams) {
			return st, fmt.Errorf("optimizer state: unknown parameter %d (damaged file?)", idn[0])
		}
		id, n := traingraph.Param(idn[0]), int(idn[1])
		want := len(g.Param(id))
		if want == 0 || n != want {
			return st, fmt.Errorf("optimizer state: %s has %d values, the graph %d (was the checkpoint made with other options?)", id, n, want)
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
			return st, fmt.Errorf("optimizer state: no moments for %s (was the checkpoint made with other options?)", id)
		}
	}
	return st, nil
}
