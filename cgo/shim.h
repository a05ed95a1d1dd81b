// C helpers for package cgo. Plain C, no globals beyond the log filter, every
// allocation paired with a free function.
#ifndef PPLUG_SHIM_H
#define PPLUG_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#include "ggml.h"
#include "gguf.h"
#include "llama.h"

// ---- logging ---------------------------------------------------------------

// pp_log_install routes llama.cpp's and ggml's log output to Go (ppGoLog),
// dropping messages below min_level before they cross into Go.
void pp_log_install(int min_level);
void pp_log_set_min_level(int min_level);
// pp_log_capture_begin starts keeping, for the calling thread only, the
// error-level lines that llama.cpp and ggml log; pp_log_capture_end stops
// and copies them (newline-separated, NUL-terminated, truncated to n) to out.
void pp_log_capture_begin(void);
size_t pp_log_capture_end(char * out, size_t n);

// ---- model loading ---------------------------------------------------------

// pp_model_params_set_progress points the progress callback at Go
// (ppGoProgress) with a runtime/cgo.Handle as user data.
void pp_model_params_set_progress(struct llama_model_params * p, uintptr_t handle);

// ---- abort flag ------------------------------------------------------------

// pp_abort is a flag that llama_decode polls between graph nodes (CPU backend).
// Go sets it from another goroutine to stop a long decode.
typedef struct pp_abort pp_abort;
pp_abort * pp_abort_new(void);
void       pp_abort_free(pp_abort * a);
void       pp_abort_set(pp_abort * a, int v);
int        pp_abort_get(pp_abort * a);
void       pp_abort_attach(struct llama_context * ctx, pp_abort * a);

// ---- batches ---------------------------------------------------------------

// pp_batch is a reusable llama_batch with exactly one sequence id per row.
// It carries either token ids or embedding rows, never both (llama.cpp
// cannot mix them in one batch).
typedef struct pp_batch {
    struct llama_batch b;
    int32_t        cap;        // rows the arrays hold
    int32_t        embd_rows;  // rows the embd array holds (0: not allocated)
    int32_t        n_embd;     // floats per embedding row
    llama_token  * tokens;     // [cap]
    float        * embd;       // [embd_rows * n_embd], allocated on first use
    llama_seq_id * seq_store;  // [cap]: b.seq_id[i] points at seq_store[i]
} pp_batch;

pp_batch * pp_batch_new(int32_t cap, int32_t n_embd);
void       pp_batch_free(pp_batch * pb);

// pp_decode fills pb with n rows and calls llama_decode. Exactly one of tok
// ([n]) and embd ([n * n_embd]) is non-NULL. pos, seq and out are [n].
// Returns llama_decode's result, or -100 when n exceeds the batch capacity,
// -101 when the embedding buffer cannot be allocated.
int32_t pp_decode(struct llama_context * ctx, pp_batch * pb,
                  const llama_token * tok, const float * embd,
                  const llama_pos * pos, const llama_seq_id * seq,
                  const int8_t * out, int32_t n);

// pp_encode is pp_decode for llama_encode (encoder-only and encoder-decoder models).
int32_t pp_encode(struct llama_context * ctx, pp_batch * pb,
                  const llama_token * tok, const float * embd,
                  const llama_pos * pos, const llama_seq_id * seq,
                  const int8_t * out, int32_t n);

// ---- tensors ---------------------------------------------------------------

// pp_to_float converts n values of ggml type `type` at src to float32.
// Returns 0, or -1 when the type has no conversion.
int pp_to_float(int type, const void * src, float * dst, int64_t n);

// ---- the C baseline for benchmarks -----------------------------------------

// pp_bench_c_loop is a plain C generation loop, written as llama.cpp's
// examples/simple would: clear the memory, decode the prompt in n_batch
// chunks, then n_gen steps of greedy sampling, token_to_piece and a one-token
// decode. It is the baseline against which the Go path's overhead is
// measured. Returns 0 or the first failing llama_decode code.
int32_t pp_bench_c_loop(struct llama_context * ctx, const llama_token * prompt,
                        int32_t n_prompt, int32_t n_gen,
                        int64_t * t_prompt_us, int64_t * t_gen_us);

// pp_c_cycle is one load / generate / free cycle in plain C (mmap load,
// 256-position context, prompt of BOS, n greedy tokens): the baseline that
// memory tests compare the Go API's cycle with, since llama.cpp itself may
// keep memory across loads. Returns 0, or -1 when a step fails.
int32_t pp_c_cycle(const char * path, int32_t n);

// pp_trim_heap returns the C heap's free memory to the system where the C
// library can (glibc's malloc_trim; elsewhere it does nothing), so that
// memory tests measure what is held, not what malloc keeps cached.
void pp_trim_heap(void);

#endif
