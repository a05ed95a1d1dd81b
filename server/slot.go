package server

import (
	"github.com/pplug/pplug/llama"
)

// slotState is where a slot is in its life. llama.cpp's tools/server keeps
// the same per slot (enum slot_state); the scheduler moves a slot
// idle → prefill → generate → idle.
type slotState uint8

const (
	// slotIdle: no job. The sequence keeps the KV of the slot's last job
	// (keys) for a request that starts the same way, or holds nothing.
	slotIdle slotState = iota
	// slotPrefill: the job's prompt is being decoded, prefillChunk
	// positions at a time, after the prefix the sequence already held.
	slotPrefill
	// slotGenerate: the prompt is decoded; each step decodes the last
	// sampled token and samples the next.
	slotGenerate
)

func (s slotState) String() string {
	switch s {
	case slotIdle:
		return "idle"
	case slotPrefill:
		return "prefill"
	case slotGenerate:
		return "generate"
	}
	return "unknown"
}

// slot is a sequence of the context and the job it runs.
type slot struct {
	seq     llama.SeqID
	state   slotState
	job     *job // nil while idle
	pos     llama.Pos
	prompt  []llama.Input // the part of the prompt not decoded yet (prefill)
	tok     llama.Token   // sampled, to decode in the next step (generate)
	reserve int
	// keys are what the sequence's KV holds, one per position (see
	// inputKeys); lastUsed orders idle slots for eviction (least recently
	// used first).
	keys     []uint64
	lastUsed uint64
}

// start gives an idle slot a job whose first reuse positions its KV
// already holds; the rest of the prompt is decoded in prefill.
func (sl *slot) start(j *job, reuse int, nEmbd int) {
	_, rest := llama.SplitInputs(j.inputs, reuse, nEmbd)
	*sl = slot{seq: sl.seq, state: slotPrefill, job: j, pos: llama.Pos(reuse), prompt: rest,
		reserve: j.nPos + j.maxTokens, keys: sl.keys[:reuse]}
}

// prefilled records that the prompt's positions up to next are decoded.
func (sl *slot) prefilled(next llama.Pos, rest []llama.Input) {
	sl.keys = append(sl.keys, sl.job.keys[sl.pos:next]...)
	sl.pos, sl.prompt = next, rest
	if rest == nil {
		sl.state = slotGenerate
	}
}

// stepped records that the pending token was decoded at sl.pos.
func (sl *slot) stepped() {
	sl.keys = append(sl.keys, tokenKey(sl.tok))
	sl.pos++
}

// idle ends the slot's job; the sequence keeps keys (nil: nothing).
func (sl *slot) idle(keys []uint64, tick uint64) {
	*sl = slot{seq: sl.seq, state: slotIdle, keys: keys, lastUsed: tick}
}
