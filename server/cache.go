package server

import (
	"math"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// The prefix cache. An idle slot keeps the KV of its last job (prompt and
// the generated tokens decoded), with one key per position. A new job goes
// to the idle slot whose keys share the longest prefix with its own when
// that prefix is at least half of what the slot holds or half of the job's
// prompt (the next turn of a conversation); otherwise, so as not to drop
// a conversation's KV for a request that shares little of it (BOS, a
// system prompt), to an empty slot, else to the least recently used one. Either way it decodes only what follows the shared prefix.
// When the KV cache lacks room for a job, idle slots give up their KV,
// least recently used first.

// pick chooses the idle slot for a job (one exists: fewer than parallel
// slots run, and there are more slots than that) and the number of its
// positions the job keeps. At least the prompt's last position is decoded
// again: its logits give the answer's first token.
func (s *scheduler) pick(j *job) (*slot, int) {
	var best, empty, lru *slot
	bestN := 0
	for _, sl := range s.slots {
		switch {
		case sl.state != slotIdle:
			continue
		case len(sl.keys) == 0:
			if empty == nil {
				empty = sl
			}
			continue
		case lru == nil || sl.lastUsed < lru.lastUsed:
			lru = sl
		}
		if n := sharedKeys(sl.keys, j.keys); n > bestN && s.keep && !j.noReuse {
			best, bestN = sl, n
		}
	}
	sl := best
	if best == nil || 2*bestN < len(best.keys) && 2*bestN < j.nPos {
		sl = empty
		if sl == nil {
			sl = lru
		}
	}
	if j.noReuse || !s.keep {
		return sl, 0
	}
	return sl, min(sharedKeys(sl.keys, j.keys), j.nPos-1)
}

// makeRoom makes the KV cache hold the admitted jobs, the KV idle slots
// keep and a job of need positions on target: it evicts idle slots, least
// recently used first. It reports whether the job fits now.
func (s *scheduler) makeRoom(target *slot, need int) bool {
	if s.reserved+need > s.budget {
		return false // only running jobs can give positions back
	}
	for {
		kept := 0
		var lru *slot
		for _, sl := range s.slots {
			if sl == target || sl.state != slotIdle || len(sl.keys) == 0 {
				continue
			}
			kept += len(sl.keys)
			if lru == nil || sl.lastUsed < lru.lastUsed {
				lru = sl
			}
		}
		switch {
		case s.reserved+kept+need <= s.budget:
			return true
		case lru == nil:
			return false
		}
		s.evict(lru)
	}
}

// evict drops what an idle slot's sequence holds.
func (s *scheduler) evict(sl *slot) {
	if _, err := s.lctx.RemoveSeq(sl.seq, -1, -1); err != nil {
		s.log.Error("free sequence", "seq", sl.seq, "err", err)
	}
	s.traced("evict seq %d: %d positions", sl.seq, len(sl.keys))
	sl.keys = nil
}

// The keys of a sequence's positions: a token's id, or a hash of an
// embedding row's values (persona rows), so that two prompts share a
// prefix only where their tokens and rows are the same. The top bit tells
// the two apart.
const tokenKeyBit = 1 << 63

func tokenKey(t llama.Token) uint64 { return tokenKeyBit | uint64(uint32(t)) }

// rowKey hashes an embedding row (FNV-1a over the values' bits).
func rowKey(row []float32) uint64 {
	h := uint64(14695981039346656037)
	for _, v := range row {
		h ^= uint64(math.Float32bits(v))
		h *= 1099511628211
	}
	return h &^ tokenKeyBit
}

// inputKeys are the keys of an input laid out by persona.InputsAt: the
// tokens, with the rows ([n][nEmbd]) after BOS and the prompt's first at
// tokens when there are any. A token goes in by its key whether it is
// decoded as a token or as its embedding row (InputsAt turns tokens into
// rows), as its KV is the same.
func inputKeys(m *llama.Model, rows []float32, toks []llama.Token, at int) []uint64 {
	d := m.NEmbd()
	keys := make([]uint64, 0, len(toks)+len(rows)/d+1)
	if len(rows) == 0 {
		for _, t := range toks {
			keys = append(keys, tokenKey(t))
		}
		return keys
	}
	l, body := persona.NewLayout(m, 0, len(rows)/d, toks, at)
	if l.BOS {
		keys = append(keys, tokenKey(m.BOS()))
	}
	for _, t := range body[:l.NContext] {
		keys = append(keys, tokenKey(t))
	}
	for i := 0; i+d <= len(rows); i += d {
		keys = append(keys, rowKey(rows[i:i+d]))
	}
	for _, t := range body[l.NContext:] {
		keys = append(keys, tokenKey(t))
	}
	return keys
}

// sharedKeys is the number of leading keys a and b share.
func sharedKeys(a, b []uint64) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
