// C helpers for package cgo. Plain C, no globals beyond the log filter, every
// allocation paired with a free function. guard.cpp (C++) is the boundary
// that keeps llama.cpp's C++ exceptions from reaching Go.
#ifndef PPLUG_SHIM_H
#define PPLUG_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- logging ---------------------------------------------------------------

// pp_log_install routes llama.cpp's and ggml's log output to Go (ppGoLog),
// dropping messages below min_level before they cross into Go.
void pp_log_install(int min_level);

// pp_log_route_library gives the ggml of another shared library (the
// libggml-base that a loadable backend links: a copy of its own, with its
// own logger) the same callback. It loads the library at path and keeps it
// loaded; it returns 0 when the library or its ggml_log_set is missing.
int pp_log_route_library(const char * path);
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
// It polls the abort flag a (which llama_decode polls too) between tokens
// and returns 2, as an aborted llama_decode does, once it is raised.
int32_t pp_bench_c_loop(struct llama_context * ctx, pp_abort * a, const llama_token * prompt,
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

// pp_heap_in_use is the bytes the C heap has handed out and not taken back
// (glibc's mallinfo2: every arena plus mmapped chunks), or -1 where the C
// library cannot say.
int64_t pp_heap_in_use(void);

// ---- the C++ boundary (guard.cpp) -----------------------------------------

// pp_error receives the message of a C++ exception that a pp_guard_*
// function caught before it could cross into Go (caught is 1 then).
typedef struct pp_error {
    int  caught;
    char msg[512];
} pp_error;

// Codes of the guarded calls besides llama.cpp's own.
#define PP_RC_ABORTED        2   // as llama_decode: stopped by the abort flag
#define PP_RC_EXCEPTION     -102 // a C++ exception was caught (see pp_error)
#define PP_SAMPLE_OK         0
#define PP_SAMPLE_NO_LOGITS  1   // the row has no logits
#define PP_SAMPLE_NONE       2   // the chain selected no candidate
#define PP_SAMPLE_DEAD_END   3   // the grammar allows no token (or not this one)

// Each pp_guard_* function is the llama.cpp (or shim) call of its name,
// run inside try/catch.
struct llama_model *   pp_guard_model_load(const char * path, struct llama_model_params p, pp_error * e);
struct llama_context * pp_guard_init_from_model(struct llama_model * m, struct llama_context_params p, pp_error * e);
int32_t pp_guard_decode(struct llama_context * ctx, pp_batch * pb,
                        const llama_token * tok, const float * embd,
                        const llama_pos * pos, const llama_seq_id * seq,
                        const int8_t * out, int32_t n, bool encode, pp_error * e);
int32_t pp_guard_tokenize(const struct llama_vocab * v, const char * text, int32_t len,
                          llama_token * out, int32_t cap, bool add_special, bool parse_special, pp_error * e);
int32_t pp_guard_token_to_piece(const struct llama_vocab * v, llama_token t, char * buf, int32_t n,
                                bool special, pp_error * e);
int32_t pp_guard_detokenize(const struct llama_vocab * v, const llama_token * toks, int32_t n_toks,
                            char * buf, int32_t n, bool remove_special, bool unparse_special, pp_error * e);
int32_t pp_guard_chat_apply(const char * tmpl, const struct llama_chat_message * msgs, size_t n,
                            bool add_ass, char * buf, int32_t len, pp_error * e);
struct llama_sampler * pp_guard_grammar_init(const struct llama_vocab * v, const char * grammar,
                                             const char * root, pp_error * e);
// pp_guard_sample samples output idx of the last decode into tok and
// accepts it; PP_SAMPLE_* or PP_RC_EXCEPTION. It refuses, instead of
// aborting, a row without logits and a grammar that allows no token.
int32_t pp_guard_sample(struct llama_sampler * chain, struct llama_context * ctx, int32_t idx,
                        llama_token * tok, pp_error * e);
// pp_guard_accept accepts tok into the chain; grammar (the chain's grammar
// sampler, or NULL) is asked first, so a token it forbids is refused
// (PP_SAMPLE_DEAD_END) rather than accepted into an abort.
int32_t pp_guard_accept(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token tok, pp_error * e);
// pp_guard_reset resets the chain; e may be NULL.
void    pp_guard_reset(struct llama_sampler * chain, pp_error * e);
int32_t pp_guard_bench_c_loop(struct llama_context * ctx, pp_abort * a, const llama_token * prompt,
                              int32_t n_prompt, int32_t n_gen,
                              int64_t * t_prompt_us, int64_t * t_gen_us, pp_error * e);
int32_t pp_guard_c_cycle(const char * path, int32_t n, pp_error * e);

// ---- the compute thread (compute.c) ----------------------------------------

typedef void (*pp_task_fn)(void * arg);

// pp_compute_start starts the compute thread; it writes one byte to done_fd
// when a task has run. 0 or an errno value.
int pp_compute_start(int done_fd);
// pp_compute_submit hands the thread fn(arg); one task at a time: the
// caller waits for its byte before the next submit.
void pp_compute_submit(pp_task_fn fn, void * arg);
// pp_task_call runs fn(arg) on the calling thread.
void pp_task_call(pp_task_fn fn, void * arg);
// pp_probe_task_run sets *(bool *) arg to whether it runs on the compute
// thread (for tests).
void pp_probe_task_run(void * arg);

// pp_decode_task is pp_guard_decode's arguments and results, with the
// error lines logged during the call (a failure's reason).
typedef struct pp_decode_task {
    struct llama_context * ctx;
    pp_batch *             pb;
    const llama_token *    tok;
    const float *          embd;
    const llama_pos *      pos;
    const llama_seq_id *   seq;
    const int8_t *         out;
    int32_t                n;
    bool                   encode;
    int32_t                rc;
    pp_error               e;
    size_t                 n_reason;
    char                   reason[2048];
} pp_decode_task;
void pp_decode_task_run(void * arg);

// pp_bench_task is pp_guard_bench_c_loop's arguments and results.
typedef struct pp_bench_task {
    struct llama_context * ctx;
    pp_abort *             abort;
    const llama_token *    prompt;
    int32_t                n_prompt, n_gen;
    int64_t                t_prompt_us, t_gen_us;
    int32_t                rc;
    pp_error               e;
} pp_bench_task;
void pp_bench_task_run(void * arg);

#ifdef __cplusplus
}
#endif

#endif
