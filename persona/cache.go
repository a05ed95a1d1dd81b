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

// Cache keeps text embeddings on disk, addressed by content: one file per
// (encoder, text), named by the SHA-256 of the exact text encoded, in a
// folder per encoder identity (Encoder.ID). A text is encoded once per
// encoder, whichever profile, user, command or process it comes from: the
// histories of users who share items, the training, dev and test splits,
// generate, chat, eval, train and serve all read one another's vectors.
//
// Files are written atomically and carry the encoder identity, the text's
// key and a checksum: a damaged file is detected, reported and rewritten,
// never trusted. Writers of the same text write the same name and rename
// over one another, so concurrent writers (goroutines or processes) are
// safe. The files are not synced: a file lost or torn by a crash fails its
// checks and is encoded again.
//
// A cache is used through a pointer and may be shared by goroutines.
type Cache struct {
	Dir string
	// Optional makes the cache a help, not a requirement: when it cannot be
	// read or written (no permission, a full disk, a file where the folder
	// should be), EncodeCached goes on without it, tells Warn (when set)
	// about the first failure and leaves the cache alone from then on.
	// Training keeps it required; generation, chat and serve need not.
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
	cacheMagic   = "PPLUGVEC"
	cacheVersion = 2
	// cacheFolder holds the vectors (version 1 kept one file per profile
	// under "embeddings"; those files are no longer read).
	cacheFolder = "vectors"
)

// ErrCacheCorrupt marks a cache file that failed its checks.
var ErrCacheCorrupt = errors.New("embedding cache file is corrupt")

// TextKey is the cache key of a text: the SHA-256 of its bytes.
func TextKey(text string) [32]byte { return sha256.Sum256([]byte(text)) }

func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// EncoderDir is the folder of an encoder's vectors.
func (c *Cache) EncoderDir(encoderID string) string {
	return filepath.Join(c.Dir, cacheFolder, hashName(encoderID))
}

// Path is the file that holds the vector of the text with key for an
// encoder (256 subfolders by the key's first byte).
func (c *Cache) Path(encoderID string, key [32]byte) string {
	h := hex.EncodeToString(key[:])
	return filepath.Join(c.EncoderDir(encoderID), h[:2], h[2:]+".vec")
}

// vecHeader is the fixed part of a vector file after the magic.
type vecHeader struct{ Version, Dim, IDLen uint32 }

// Get reads the vector of the text with key. A missing file gives nil and
// no error; a damaged one (or one of another encoder, text or width) an
// error wrapping ErrCacheCorrupt.
func (c *Cache) Get(encoderID string, key [32]byte, dim int) ([]float32, error) {
	b, err := os.ReadFile(c.Path(encoderID, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeVector(b, encoderID, key, dim)
}

func decodeVector(b []byte, encoderID string, key [32]byte, dim int) ([]float32, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrCacheCorrupt, why) }
	head := len(cacheMagic) + binary.Size(vecHeader{})
	if len(b) < head+32+32 {
		return nil, bad("too short")
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		return nil, bad("checksum mismatch")
	}
	if string(body[:len(cacheMagic)]) != cacheMagic {
		return nil, bad("wrong magic")
	}
	var hdr vecHeader
	binary.Read(bytes.NewReader(body[len(cacheMagic):head]), binary.LittleEndian, &hdr)
	switch {
	case hdr.Version != cacheVersion:
		return nil, bad(fmt.Sprintf("version %d", hdr.Version))
	case int(hdr.Dim) != dim:
		return nil, bad(fmt.Sprintf("a vector of %d values, want %d", hdr.Dim, dim))
	case len(body) != head+int(hdr.IDLen)+32+4*dim:
		return nil, bad("size does not match the header")
	case string(body[head:head+int(hdr.IDLen)]) != encoderID:
		return nil, bad("made by another encoder")
	}
	rest := body[head+int(hdr.IDLen):]
	if !bytes.Equal(rest[:32], key[:]) {
		return nil, bad("the vector of another text")
	}
	v := make([]float32, dim)
	for j := range v {
		v[j] = math.Float32frombits(binary.LittleEndian.Uint32(rest[32+4*j:]))
	}
	return v, nil
}

// Put writes the vector of the text with key, atomically.
func (c *Cache) Put(encoderID string, key [32]byte, vec []float32) error {
	path := c.Path(encoderID, key)
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(cacheMagic)
	binary.Write(&buf, binary.LittleEndian, vecHeader{cacheVersion, uint32(len(vec)), uint32(len(encoderID))})
	buf.WriteString(encoderID)
	buf.Write(key[:])
	var f [4]byte
	for _, x := range vec {
		binary.LittleEndian.PutUint32(f[:], math.Float32bits(x))
		buf.Write(f[:])
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	return atomicfile.WriteUnsynced(path, func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// EncodeStats says what EncodeCached did.
type EncodeStats struct {
	Items    int // texts asked for
	Distinct int // distinct texts among them
	Cached   int // distinct texts found in the cache
	Encoded  int // distinct texts encoded now
	// Rebuilt counts damaged cache files, encoded again and rewritten.
	Rebuilt int
}

// EncodeCached returns the vectors of texts (encoded exactly as given, no
// prefix), reading them from the cache where it has them and encoding (in
// batches) each distinct missing text once, then storing it. A nil cache
// encodes each distinct text once. progress receives the number of texts
// encoded so far and the number to encode.
func EncodeCached(ctx context.Context, enc *Encoder, cache *Cache, texts []string, progress func(done, total int)) ([][]float32, EncodeStats, error) {
	st := EncodeStats{Items: len(texts)}
	keys, first := distinctTexts(texts)
	st.Distinct = len(first)
	have, err := cache.lookup(ctx, enc, keys, first, &st)
	if err != nil {
		return nil, st, err
	}
	var todo []string
	var todoKeys [][32]byte
	for _, i := range first {
		if have[keys[i]] == nil {
			todo, todoKeys = append(todo, texts[i]), append(todoKeys, keys[i])
		}
	}
	if len(todo) > 0 {
		var pf func(int)
		if progress != nil {
			pf = func(done int) { progress(done, len(todo)) }
		}
		vecs, err := enc.Encode(ctx, todo, "", pf)
		if err != nil {
			return nil, st, err
		}
		st.Encoded = len(todo)
		for j, k := range todoKeys {
			have[k] = vecs[j]
		}
		if err := cache.store(enc, todoKeys, vecs); err != nil {
			return nil, st, err
		}
	}
	out := make([][]float32, len(texts))
	for i, k := range keys {
		out[i] = have[k]
	}
	return out, st, nil
}

// distinctTexts returns the key of every text and the index of the first
// text of each distinct key, in order.
func distinctTexts(texts []string) (keys [][32]byte, first []int) {
	keys = make([][32]byte, len(texts))
	seen := make(map[[32]byte]bool, len(texts))
	for i, s := range texts {
		keys[i] = TextKey(s)
		if !seen[keys[i]] {
			seen[keys[i]] = true
			first = append(first, i)
		}
	}
	return keys, first
}

// lookup reads the cached vectors of the distinct keys (keys[i] for i in
// first). Damaged files count in st.Rebuilt and are left to be rewritten;
// an unreadable cache fails, or is turned off when Optional.
func (c *Cache) lookup(ctx context.Context, enc *Encoder, keys [][32]byte, first []int, st *EncodeStats) (map[[32]byte][]float32, error) {
	have := make(map[[32]byte][]float32, len(first))
	if !c.usable() {
		return have, nil
	}
	for _, i := range first {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := c.Get(enc.ID(), keys[i], enc.Dim())
		switch {
		case errors.Is(err, ErrCacheCorrupt):
			st.Rebuilt++
		case err != nil:
			return have, c.fail(fmt.Errorf("read embedding cache in %s: %w", c.Dir, err))
		case v != nil:
			have[keys[i]] = v
			st.Cached++
		}
	}
	return have, nil
}

// store writes freshly encoded vectors; a write error fails, or turns an
// Optional cache off.
func (c *Cache) store(enc *Encoder, keys [][32]byte, vecs [][]float32) error {
	for j, k := range keys {
		if !c.usable() {
			return nil
		}
		if err := c.Put(enc.ID(), k, vecs[j]); err != nil {
			return c.fail(fmt.Errorf("write embedding cache in %s: %w", c.Dir, err))
		}
	}
	return nil
}
