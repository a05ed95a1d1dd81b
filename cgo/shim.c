#include "shim.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "_cgo_export.h"

// ---- logging ---------------------------------------------------------------

static atomic_int pp_log_min = GGML_LOG_LEVEL_ERROR;

// GGML_LOG_LEVEL_CONT continues the previous message of the same thread, so
// the filter remembers, per thread, whether that message was let through.
static _Thread_local int pp_log_last_passed = 0;

// Error lines of the calling thread, kept between pp_log_capture_begin and
// pp_log_capture_end: a load's reason reaches its own caller even when
// several threads load at once.
#define PP_CAPTURE_MAX 4096
static _Thread_local int pp_cap_on = 0;
static _Thread_local int pp_cap_last_err = 0;
static _Thread_local size_t pp_cap_len = 0;
static _Thread_local char pp_cap_buf[PP_CAPTURE_MAX];

static void pp_log_capture(enum ggml_log_level level, const char * text) {
    int err;
    if (level == GGML_LOG_LEVEL_CONT) {
        err = pp_cap_last_err;
    } else {
        err = level >= GGML_LOG_LEVEL_ERROR;
        pp_cap_last_err = err;
    }
    if (!err || text == NULL) {
        return;
    }
    size_t n = strlen(text);
    if (n > PP_CAPTURE_MAX - 1 - pp_cap_len) {
        n = PP_CAPTURE_MAX - 1 - pp_cap_len;
    }
    memcpy(pp_cap_buf + pp_cap_len, text, n);
    pp_cap_len += n;
    pp_cap_buf[pp_cap_len] = 0;
}

void pp_log_capture_begin(void) {
    pp_cap_on = 1;
    pp_cap_last_err = 0;
    pp_cap_len = 0;
    pp_cap_buf[0] = 0;
}

size_t pp_log_capture_end(char * out, size_t n) {
    pp_cap_on = 0;
    if (n == 0) {
        return 0;
    }
    size_t m = pp_cap_len < n - 1 ? pp_cap_len : n - 1;
    memcpy(out, pp_cap_buf, m);
    out[m] = 0;
    return m;
}

static void pp_log_cb(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    if (pp_cap_on) {
        pp_log_capture(level, text);
    }
    int pass;
    if (level == GGML_LOG_LEVEL_CONT) {
        pass = pp_log_last_passed;
    } else {
        pass = (int) level >= atomic_load(&pp_log_min);
        pp_log_last_passed = pass;
    }
    if (pass) {
        ppGoLog((int) level, (char *) text);
    }
}

void pp_log_install(int min_level) {
    atomic_store(&pp_log_min, min_level);
    llama_log_set(pp_log_cb, NULL);
}

int pp_log_route_library(const char * path) {
    void * h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        return 0;
    }
    void (*set)(ggml_log_callback, void *);
    *(void **) &set = dlsym(h, "ggml_log_set");
    if (set == NULL) {
        dlclose(h);
        return 0;
    }
    set(pp_log_cb, NULL);
    return 1;
}

void pp_log_set_min_level(int min_level) {
    atomic_store(&pp_log_min, min_level);
}

// ---- model loading ---------------------------------------------------------

static bool pp_progress_cb(float progress, void * user_data) {
    return ppGoProgress(progress, (uintptr_t) user_data);
}

void pp_model_params_set_progress(struct llama_model_params * p, uintptr_t handle) {
    p->progress_callback = pp_progress_cb;
    p->progress_callback_user_data = (void *) handle;
}

// ---- abort flag ------------------------------------------------------------

struct pp_abort {
    atomic_int flag;
};

pp_abort * pp_abort_new(void) {
    pp_abort * a = malloc(sizeof(*a));
    if (a) {
        atomic_init(&a->flag, 0);
    }
    return a;
}

void pp_abort_free(pp_abort * a) { free(a); }
void pp_abort_set(pp_abort * a, int v) { atomic_store(&a->flag, v); }
int  pp_abort_get(pp_abort * a) { return atomic_load(&a->flag); }

static bool pp_abort_cb(void * data) {
    return atomic_load(&((pp_abort *) data)->flag) != 0;
}

void pp_abort_attach(struct llama_context * ctx, pp_abort * a) {
    llama_set_abort_callback(ctx, pp_abort_cb, a);
}

// ---- batches ---------------------------------------------------------------

pp_batch * pp_batch_new(int32_t cap, int32_t n_embd) {
    if (cap <= 0 || n_embd <= 0) {
        return NULL;
    }
    pp_batch * pb = calloc(1, sizeof(*pb));
    if (!pb) {
        return NULL;
    }
    pb->cap = cap;
    pb->n_embd = n_embd;
    pb->tokens = malloc(sizeof(llama_token) * (size_t) cap);
    pb->seq_store = malloc(sizeof(llama_seq_id) * (size_t) cap);
    pb->b.pos = malloc(sizeof(llama_pos) * (size_t) cap);
    pb->b.n_seq_id = malloc(sizeof(int32_t) * (size_t) cap);
    pb->b.seq_id = malloc(sizeof(llama_seq_id *) * (size_t) cap);
    pb->b.logits = malloc(sizeof(int8_t) * (size_t) cap);
    if (!pb->tokens || !pb->seq_store || !pb->b.pos || !pb->b.n_seq_id || !pb->b.seq_id || !pb->b.logits) {
        pp_batch_free(pb);
        return NULL;
    }
    for (int32_t i = 0; i < cap; i++) {
        pb->b.n_seq_id[i] = 1;
        pb->b.seq_id[i] = &pb->seq_store[i];
    }
    return pb;
}

void pp_batch_free(pp_batch * pb) {
    if (!pb) {
        return;
    }
    free(pb->embd);
    free(pb->b.logits);
    free(pb->b.seq_id);
    free(pb->b.n_seq_id);
    free(pb->b.pos);
    free(pb->seq_store);
    free(pb->tokens);
    free(pb);
}

// pp_fill copies n rows into pb; returns 0 or a negative pp_decode error.
static int32_t pp_fill(pp_batch * pb, const llama_token * tok, const float * embd,
                       const llama_pos * pos, const llama_seq_id * seq,
                       const int8_t * out, int32_t n) {
    if (n <= 0 || n > pb->cap || (tok == NULL) == (embd == NULL)) {
        return -100;
    }
    if (tok) {
        memcpy(pb->tokens, tok, sizeof(llama_token) * (size_t) n);
        pb->b.token = pb->tokens;
        pb->b.embd = NULL;
    } else {
        if (pb->embd_rows < n) {
            // Grow to the rows asked for, not to cap: n_embd can be large.
            float * e = malloc(sizeof(float) * (size_t) n * (size_t) pb->n_embd);
            if (!e) {
                return -101;
            }
            free(pb->embd);
            pb->embd = e;
            pb->embd_rows = n;
        }
        memcpy(pb->embd, embd, sizeof(float) * (size_t) n * (size_t) pb->n_embd);
        pb->b.embd = pb->embd;
        pb->b.token = NULL;
    }
    memcpy(pb->b.pos, pos, sizeof(llama_pos) * (size_t) n);
    memcpy(pb->seq_store, seq, sizeof(llama_seq_id) * (size_t) n);
    memcpy(pb->b.logits, out, sizeof(int8_t) * (size_t) n);
    pb->b.n_tokens = n;
    return 0;
}

int32_t pp_decode(struct llama_context * ctx, pp_batch * pb,
                  const llama_token * tok, const float * embd,
                  const llama_pos * pos, const llama_seq_id * seq,
                  const int8_t * out, int32_t n) {
    int32_t rc = pp_fill(pb, tok, embd, pos, seq, out, n);
    if (rc != 0) {
        return rc;
    }
    return llama_decode(ctx, pb->b);
}

int32_t pp_encode(struct llama_context * ctx, pp_batch * pb,
                  const llama_token * tok, const float * embd,
                  const llama_pos * pos, const llama_seq_id * seq,
                  const int8_t * out, int32_t n) {
    int32_t rc = pp_fill(pb, tok, embd, pos, seq, out, n);
    if (rc != 0) {
        return rc;
    }
    return llama_encode(ctx, pb->b);
}

// ---- tensors ---------------------------------------------------------------

int pp_to_float(int type, const void * src, float * dst, int64_t n) {
    if (type == GGML_TYPE_F32) {
        memcpy(dst, src, sizeof(float) * (size_t) n);
        return 0;
    }
    if (type < 0 || type >= GGML_TYPE_COUNT) {
        return -1;
    }
    const struct ggml_type_traits * tt = ggml_get_type_traits((enum ggml_type) type);
    if (!tt || !tt->to_float) {
        return -1;
    }
    tt->to_float(src, dst, n);
    return 0;
}

// ---- the C baseline for benchmarks -----------------------------------------

int32_t pp_bench_c_loop(struct llama_context * ctx, pp_abort * a, const llama_token * prompt,
                        int32_t n_prompt, int32_t n_gen,
                        int64_t * t_prompt_us, int64_t * t_gen_us) {
    const struct llama_model * model = llama_get_model(ctx);
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_batch = (int32_t) llama_n_batch(ctx);

    llama_memory_clear(llama_get_memory(ctx), true);

    struct llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());

    int32_t rc = 0;
    int64_t t0 = llama_time_us();
    for (int32_t i = 0; i < n_prompt && rc == 0; i += n_batch) {
        if (pp_abort_get(a)) {
            rc = PP_RC_ABORTED;
            break;
        }
        int32_t n = n_prompt - i < n_batch ? n_prompt - i : n_batch;
        rc = llama_decode(ctx, llama_batch_get_one((llama_token *) prompt + i, n));
    }
    int64_t t1 = llama_time_us();

    char piece[256];
    for (int32_t i = 0; i < n_gen && rc == 0; i++) {
        if (pp_abort_get(a)) {
            rc = PP_RC_ABORTED;
            break;
        }
        llama_token tok = llama_sampler_sample(smpl, ctx, -1);
        (void) llama_token_to_piece(vocab, tok, piece, sizeof(piece), 0, true);
        rc = llama_decode(ctx, llama_batch_get_one(&tok, 1));
    }
    int64_t t2 = llama_time_us();

    llama_sampler_free(smpl);
    *t_prompt_us = t1 - t0;
    *t_gen_us = t2 - t1;
    return rc;
}

int32_t pp_c_cycle(const char * path, int32_t n) {
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        return -1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        llama_model_free(model);
        return -1;
    }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    struct llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    llama_token tok = llama_vocab_bos(vocab);
    int32_t rc = 0;
    for (int32_t i = 0; i < n && rc == 0; i++) {
        rc = llama_decode(ctx, llama_batch_get_one(&tok, 1));
        if (rc == 0) {
            tok = llama_sampler_sample(smpl, ctx, -1);
        }
    }
    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    return rc == 0 ? 0 : -1;
}

void pp_trim_heap(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

int64_t pp_heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (int64_t) (mi.uordblks + mi.hblkhd);
#else
    return -1;
#endif
}
