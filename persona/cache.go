package persona

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/pplug/pplug/internal/atomicfile"
)

// Cache keeps history embeddings on disk, one file per (encoder, profile),
// each vector under the SHA-256 of its text. A profile is encoded once; a
// changed or added item re-encodes only itself. Files are written
// atomically and end with a checksum: a damaged file is detected, reported
// and rebuilt, never trusted.
//
// A cache is used through a pointer and may be shared by goroutines.
type Cache struct {
	Dir string
	// Optional makes the cache a help, not a requirement: when it cannot be
	// read or written (no permission, a full disk, a file where the folder
	// should be), EncodeCached goes on without it, tells Warn (when set)
	// about the first failure and leaves the cache alone from then on.
	// Training keeps it required; generation and chat need not.
	Optional bool
	Warn     func(err error)

	off atomic.Bool // an Optional cache failed: no longer used
}

// usable reports whether EncodeCached may use the cache.
func (c *Cache) usable() bool { return c != nil && !c.off.Load() }

// fail handles an error of an Optional cache: the cache is turned off and
// the first failure reported. It returns err for a required cache.
func (c *Cache) fail(err error) error {
	if !c.Optional {
		return err
	}
	if c.off.CompareAndSwap(false, true) && c.Warn != nil {
		c.Warn(err)
	}
	return nil
}

// DefaultCacheDir is $PPLUG_CACHE_DIR, else <user cache dir>/pplug.
func DefaultCacheDir() string {
	if d := os.Getenv("PPLUG_CACHE_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pplug")
	}
	return filepath.Join(os.TempDir(), "pplug-cache")
}

const (
	cacheMagic   = "PPLUGEMB"
	cacheVersion = 1
)

// ErrCacheCorrupt marks a cache file that failed its checks.
var ErrCacheCorrupt = errors.New("embedding cache file is corrupt")

// TextKey is the cache key of a text.
func TextKey(text string) [32]byte { return sha256.Sum256([]byte(text)) }

func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// Path is the file that holds a profile's vectors for an encoder.
func (c *Cache) Path(encoderID, profileKey string) string {
	return filepath.Join(c.Dir, "embeddings", hashName(encoderID), hashName(profileKey)+".emb")
}

// Load reads the vectors of one (encoder, profile) file. A missing file
// gives an empty map; a damaged one gives ErrCacheCorrupt.
func (c *Cache) Load(encoderID, profileKey string, dim int) (map[[32]byte][]float32, error) {
	b, err := os.ReadFile(c.Path(encoderID, profileKey))
	if errors.Is(err, fs.ErrNotExist) {
		return map[[32]byte][]float32{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeCache(b, encoderID, dim)
}

func decodeCache(b []byte, encoderID string, dim int) (map[[32]byte][]float32, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrCacheCorrupt, why) }
	if len(b) < len(cacheMagic)+16+32 {
		return nil, bad("too short")
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return nil, bad("checksum mismatch")
	}
	r := bytes.NewReader(body)
	magic := make([]byte, len(cacheMagic))
	io.ReadFull(r, magic)
	if string(magic) != cacheMagic {
		return nil, bad("wrong magic")
	}
	var hdr struct{ Version, Dim, Count, IDLen uint32 }
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		return nil, bad("short header")
	}
	if hdr.Version != cacheVersion {
		return nil, bad(fmt.Sprintf("version %d", hdr.Version))
	}
	if int(hdr.Dim) != dim {
		return nil, bad(fmt.Sprintf("vectors of %d values, want %d", hdr.Dim, dim))
	}
	id := make([]byte, hdr.IDLen)
	if _, err := io.ReadFull(r, id); err != nil || string(id) != encoderID {
		return nil, bad("made by another encoder")
	}
	entry := 32 + 4*int(hdr.Dim)
	if r.Len() != int(hdr.Count)*entry {
		return nil, bad("size does not match the entry count")
	}
	out := make(map[[32]byte][]float32, hdr.Count)
	raw := make([]byte, 4*hdr.Dim)
	for range hdr.Count {
		var k [32]byte
		io.ReadFull(r, k[:])
		io.ReadFull(r, raw)
		v := make([]float32, hdr.Dim)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		out[k] = v
	}
	return out, nil
}

// Store writes the vectors of one (encoder, profile) file atomically.
func (c *Cache) Store(encoderID, profileKey string, dim int, keys [][32]byte, vecs [][]float32) error {
	path := c.Path(encoderID, profileKey)
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return err
	}
	// Repeated texts are stored once.
	seen := make(map[[32]byte]bool, len(keys))
	var uk [][32]byte
	var uv [][]float32
	for i, k := range keys {
		if !seen[k] {
			seen[k] = true
			uk, uv = append(uk, k), append(uv, vecs[i])
		}
	}
	keys, vecs = uk, uv
	var buf bytes.Buffer
	buf.WriteString(cacheMagic)
	binary.Write(&buf, binary.LittleEndian, struct{ Version, Dim, Count, IDLen uint32 }{
		cacheVersion, uint32(dim), uint32(len(keys)), uint32(len(encoderID)),
	})
	buf.WriteString(encoderID)
	var f [4]byte
	for i, k := range keys {
		if len(vecs[i]) != dim {
			return fmt.Errorf("cache: vector %d has %d values, want %d", i, len(vecs[i]), dim)
		}
		buf.Write(k[:])
		for _, x := range vecs[i] {
			binary.LittleEndian.PutUint32(f[:], math.Float32bits(x))
			buf.Write(f[:])
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// EncodeStats says what EncodeCached did.
type EncodeStats struct {
	Items   int  // texts asked for
	Cached  int  // found in the cache
	Encoded int  // encoded now
	Rebuilt bool // the cache file was damaged and was rebuilt
}

// EncodeCached returns the vectors of texts, reading them from the cache
// where it has them and encoding (in batches) only the rest; the file is
// then rewritten with exactly these texts' vectors. A nil cache encodes
// everything. progress receives the number of texts encoded so far.
func EncodeCached(ctx context.Context, enc *Encoder, cache *Cache, profileKey string, texts []string, progress func(done, total int)) ([][]float32, EncodeStats, error) {
	st := EncodeStats{Items: len(texts)}
	keys := make([][32]byte, len(texts))
	for i, s := range texts {
		keys[i] = TextKey(s)
	}
	have := map[[32]byte][]float32{}
	useCache := cache.usable()
	if useCache {
		var err error
		have, err = cache.Load(enc.ID(), profileKey, enc.Dim())
		if errors.Is(err, ErrCacheCorrupt) {
			st.Rebuilt = true
			have = map[[32]byte][]float32{}
		} else if err != nil {
			if err := cache.fail(fmt.Errorf("read embedding cache in %s: %w", cache.Dir, err)); err != nil {
				return nil, st, err
			}
			useCache = false
			have = map[[32]byte][]float32{}
		}
	}
	out := make([][]float32, len(texts))
	unique := map[[32]byte]bool{}
	for _, k := range keys {
		unique[k] = true
	}
	var missing []int
	for i, k := range keys {
		if v, ok := have[k]; ok {
			out[i] = v
			st.Cached++
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		todo := make([]string, len(missing))
		for j, i := range missing {
			todo[j] = texts[i]
		}
		var pf func(int)
		if progress != nil {
			pf = func(done int) { progress(done, len(todo)) }
		}
		vecs, err := enc.Encode(ctx, todo, "", pf)
		if err != nil {
			return nil, st, err
		}
		for j, i := range missing {
			out[i] = vecs[j]
		}
		st.Encoded = len(missing)
	}
	if useCache && (st.Encoded > 0 || st.Rebuilt || len(have) != len(unique)) {
		if err := cache.Store(enc.ID(), profileKey, enc.Dim(), keys, out); err != nil {
			if err := cache.fail(fmt.Errorf("write embedding cache in %s: %w", cache.Dir, err)); err != nil {
				return nil, st, err
			}
		}
	}
	return out, st, nil
}
