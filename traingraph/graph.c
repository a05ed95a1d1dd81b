#define _FILE_OFFSET_BITS 64
#define _POSIX_C_SOURCE 200809L
#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"

#define PP_GRAPH_SIZE 32768
#define PP_MAX_LAYERS 256

typedef struct pp_layer {
    struct ggml_tensor * attn_norm;
    struct ggml_tensor * wq, * wk, * wv, * wo;
    struct ggml_tensor * bq, * bk, * bv;        // qwen2 (may be NULL)
    struct ggml_tensor * wqkv;                  // phi3: Q, K and V fused
    struct ggml_tensor * q_norm, * k_norm;      // qwen3, gemma3: RMS norm per head
    struct ggml_tensor * attn_post_norm;        // gemma2/3: norm of the attention output
    struct ggml_tensor * ffn_norm;
    struct ggml_tensor * ffn_gate, * ffn_up, * ffn_down; // phi3: ffn_up is gate and up fused
    struct ggml_tensor * ffn_post_norm;         // gemma2/3: norm of the FFN output
} pp_layer;

// How the input rows are scaled before the first layer (llama.cpp's graphs
// at the pinned commit): gemma2 scales every input row by sqrt(n_embd),
// injected embeddings included; gemma3 scales only when the batch carries
// tokens, so rows injected as embeddings are not scaled (llama.Model's
// TokenEmbeddings scales the token rows it hands out instead).
enum pp_input_scale { PP_SCALE_NONE, PP_SCALE_ALL, PP_SCALE_TOKENS };

// pp_arch is what one architecture's decoder does differently.
typedef struct pp_arch {
    const char * name;
    int  rope_mode;
    bool qk_norm;     // attn_q_norm / attn_k_norm over each head
    bool post_norms;  // post_attention_norm and post_ffw_norm (gemma)
    bool fused_qkv;   // attn_qkv holds Q, K, V (phi3)
    bool fused_up;    // ffn_up holds gate and up, 2 x n_ff (phi3)
    bool gelu;        // GELU (tanh form) gate instead of SiLU (gemma)
    bool gemma;       // gemma's attention scale and soft-caps
    enum pp_input_scale input_scale;
    int  swa_pattern; // sliding-window layers: il % n < n - 1 (0: none)
} pp_arch;

// The architectures the training graph builds. "mistral" is kept for old
// conversions; llama.cpp converts Mistral and Ministral models to "llama",
// whose graph ignores any attention.sliding_window key, as this one does.
static const pp_arch pp_archs[] = {
    { "llama",   GGML_ROPE_TYPE_NORMAL, false, false, false, false, false, false, PP_SCALE_NONE,   0 },
    { "mistral", GGML_ROPE_TYPE_NORMAL, false, false, false, false, false, false, PP_SCALE_NONE,   0 },
    { "qwen2",   GGML_ROPE_TYPE_NEOX,   false, false, false, false, false, false, PP_SCALE_NONE,   0 },
    { "qwen3",   GGML_ROPE_TYPE_NEOX,   true,  false, false, false, false, false, PP_SCALE_NONE,   0 },
    { "gemma2",  GGML_ROPE_TYPE_NEOX,   false, true,  false, false, true,  true,  PP_SCALE_ALL,    2 },
    { "gemma3",  GGML_ROPE_TYPE_NEOX,   true,  true,  false, false, true,  true,  PP_SCALE_TOKENS, 6 },
    { "phi3",    GGML_ROPE_TYPE_NEOX,   false, false, true,  true,  false, false, PP_SCALE_NONE,   0 },
};
#define PP_N_ARCHS ((int) (sizeof(pp_archs) / sizeof(pp_archs[0])))

static const pp_arch * pp_find_arch(const char * name) {
    for (int i = 0; i < PP_N_ARCHS; i++) {
        if (strcmp(pp_archs[i].name, name) == 0) {
            return &pp_archs[i];
        }
    }
    return NULL;
}

void pp_train_archs(char * buf, int32_t len) {
    if (len <= 0) {
        return;
    }
    buf[0] = 0;
    for (int i = 0; i < PP_N_ARCHS; i++) {
        const size_t used = strlen(buf);
        snprintf(buf + used, (size_t) len - used, "%s%s", i > 0 ? ", " : "", pp_archs[i].name);
    }
}

struct pp_train {
    pp_train_cfg cfg;
    char err[512];

    // model
    char    arch[64];
    const pp_arch * a;
    int32_t n_embd, n_layer, n_head, n_head_kv, n_vocab, n_rot, rope_mode, n_ctx_orig;
    int32_t n_embd_head;  // attention.key_length (gemma: not n_embd / n_head)
    int32_t n_swa;        // sliding window of the SWA layers (0: none)
    float   eps, freq_base, freq_scale, attn_factor;
    float   freq_base_swa, freq_scale_swa;
    float   kq_scale;     // attention scale
    float   attn_softcap; // gemma2: cap * tanh(kq / cap) (0: none)
    float   final_softcap; // gemma2/3: on the logits (0: none)
    struct ggml_tensor * tok_embd, * output_norm, * output, * rope_freqs;
    struct ggml_tensor * swa_mask; // [T, T]: -INF beyond the window, else 0
    pp_layer layers[PP_MAX_LAYERS];

    ggml_backend_t backend;
    struct ggml_context * ctx_w;       // frozen weights
    ggml_backend_buffer_t buf_w;
    struct ggml_context * ctx_static;  // inputs and parameters
    ggml_backend_buffer_t buf_static;
    struct ggml_context * ctx_grads;   // gradient accumulators
    ggml_backend_buffer_t buf_grads;
    struct ggml_context * ctx_compute; // graph tensors (allocated by galloc)
    ggml_gallocr_t galloc;

    struct ggml_tensor * in[PP_IN_COUNT];
    struct ggml_tensor * par[PP_P_COUNT];
    struct ggml_tensor * gradacc[PP_P_COUNT];
    struct ggml_tensor * loss;
    struct ggml_tensor * rows;

    struct ggml_cgraph * gf; // forward
    struct ggml_cgraph * gb; // forward + backward

    // the all-positions logits graph (tests), built on first use
    struct ggml_context * ctx_logits;
    ggml_gallocr_t galloc_logits;
    struct ggml_cgraph * g_logits;
    struct ggml_tensor * logits_all;
};

static void pp_errf(pp_train * t, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
}

const char * pp_train_error(const pp_train * t) { return t->err; }
int32_t pp_train_n_embd (const pp_train * t) { return t->n_embd; }
int32_t pp_train_n_vocab(const pp_train * t) { return t->n_vocab; }

// ---- hyper-parameters ------------------------------------------------------

static int64_t kv_find(const struct gguf_context * g, const char * arch, const char * suffix) {
    char key[256];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    return gguf_find_key(g, key);
}

static bool kv_u32(const struct gguf_context * g, const char * arch, const char * suffix, int32_t * out) {
    int64_t i = kv_find(g, arch, suffix);
    if (i < 0) {
        return false;
    }
    switch (gguf_get_kv_type(g, i)) {
        case GGUF_TYPE_UINT32: *out = (int32_t) gguf_get_val_u32(g, i); return true;
        case GGUF_TYPE_INT32:  *out = gguf_get_val_i32(g, i); return true;
        case GGUF_TYPE_UINT64: *out = (int32_t) gguf_get_val_u64(g, i); return true;
        default: return false;
    }
}

static bool kv_f32(const struct gguf_context * g, const char * arch, const char * suffix, float * out) {
    int64_t i = kv_find(g, arch, suffix);
    if (i < 0 || gguf_get_kv_type(g, i) != GGUF_TYPE_FLOAT32) {
        return false;
    }
    *out = gguf_get_val_f32(g, i);
    return true;
}

// ---- weights ---------------------------------------------------------------

// A weight to load: its name in the file and where the pointer goes.
typedef struct pp_wref {
    char name[96];
    struct ggml_tensor ** dst;
    bool required;
} pp_wref;

// pp_train_type is the type a weight keeps in the training graph. The
// backward pass multiplies by each weight transposed (ggml_out_prod), which
// the CPU backend implements for F32 and the block-quantized types but not
// for F16/BF16: those become F32; quantized weights stay as they are.
static enum ggml_type pp_train_type(enum ggml_type src, int n_dims) {
    if (n_dims < 2) {
        return GGML_TYPE_F32;
    }
    switch (src) {
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q8_0: case GGML_TYPE_MXFP4: case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_TQ1_0:
        case GGML_TYPE_TQ2_0: case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ3_XXS:
        case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
        case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ2_S:
            return src;
        default:
            return GGML_TYPE_F32;
    }
}

static bool pp_load_weights(pp_train * t, const char * path, struct gguf_context * g, struct ggml_context * meta,
                            pp_wref * refs, int n_refs) {
    struct ggml_init_params ip = { (size_t) (n_refs + 8) * ggml_tensor_overhead(), NULL, true };
    t->ctx_w = ggml_init(ip);
    if (!t->ctx_w) {
        pp_errf(t, "ggml_init failed");
        return false;
    }
    struct ggml_tensor ** src = calloc((size_t) n_refs, sizeof(*src));
    for (int i = 0; i < n_refs; i++) {
        struct ggml_tensor * m = ggml_get_tensor(meta, refs[i].name);
        if (!m) {
            if (refs[i].required) {
                pp_errf(t, "the model has no tensor %s", refs[i].name);
                free(src);
                return false;
            }
            *refs[i].dst = NULL;
            continue;
        }
        src[i] = m;
        struct ggml_tensor * w = ggml_new_tensor(t->ctx_w, pp_train_type(m->type, ggml_n_dims(m)), GGML_MAX_DIMS, m->ne);
        ggml_set_name(w, refs[i].name);
        *refs[i].dst = w;
    }
    t->buf_w = ggml_backend_alloc_ctx_tensors(t->ctx_w, t->backend);
    if (!t->buf_w) {
        pp_errf(t, "cannot allocate %s of weights", "memory");
        free(src);
        return false;
    }
    FILE * f = fopen(path, "rb");
    if (!f) {
        pp_errf(t, "cannot open %s", path);
        free(src);
        return false;
    }
    const size_t data_off = gguf_get_data_offset(g);
    void * raw = NULL;
    size_t raw_cap = 0;
    float * tmp = NULL;
    size_t tmp_cap = 0;
    bool ok = true;
    for (int i = 0; i < n_refs && ok; i++) {
        if (!src[i]) {
            continue;
        }
        struct ggml_tensor * m = src[i];
        struct ggml_tensor * w = *refs[i].dst;
        int64_t tid = gguf_find_tensor(g, refs[i].name);
        size_t nbytes = ggml_nbytes(m);
        if (nbytes > raw_cap) {
            free(raw);
            raw_cap = nbytes;
            raw = malloc(raw_cap);
        }
        if (!raw || fseeko(f, (off_t) (data_off + gguf_get_tensor_offset(g, tid)), SEEK_SET) != 0 ||
            fread(raw, 1, nbytes, f) != nbytes) {
            pp_errf(t, "cannot read tensor %s (truncated file?)", refs[i].name);
            ok = false;
            break;
        }
        if (w->type == m->type) {
            memcpy(w->data, raw, nbytes);
            continue;
        }
        const int64_t n = ggml_nelements(m);
        if ((size_t) n > tmp_cap) {
            free(tmp);
            tmp_cap = (size_t) n;
            tmp = malloc(tmp_cap * sizeof(float));
        }
        const struct ggml_type_traits * tt = ggml_get_type_traits(m->type);
        if (!tmp || !tt->to_float) {
            pp_errf(t, "cannot convert tensor %s of type %s", refs[i].name, ggml_type_name(m->type));
            ok = false;
            break;
        }
        tt->to_float(raw, tmp, n);
        memcpy(w->data, tmp, (size_t) n * sizeof(float)); // conversions only go to F32
    }
    free(tmp);
    free(raw);
    free(src);
    fclose(f);
    return ok;
}

// ---- graph -----------------------------------------------------------------

// gelu_erf is 0.5 x (1 + erf(x / sqrt 2)) from operations ggml can
// differentiate; erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), so
// training sees the exact GELU the plug-in's kernels compute.
static struct ggml_tensor * gelu_erf(struct ggml_context * ctx, struct ggml_tensor * x) {
    const float p = 0.3275911f;
    const float a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f, a5 = 1.061405429f;
    struct ggml_tensor * z    = ggml_scale(ctx, x, 0.70710678118654752f);
    struct ggml_tensor * az   = ggml_abs(ctx, z);
    struct ggml_tensor * den  = ggml_scale_bias(ctx, az, p, 1.0f);      // 1 + p|z|
    struct ggml_tensor * ones = ggml_scale_bias(ctx, az, 0.0f, 1.0f);   // 1
    struct ggml_tensor * tt   = ggml_div(ctx, ones, den);              // 1 / (1 + p|z|)
    struct ggml_tensor * poly = ggml_scale_bias(ctx, tt, a5, a4);
    poly = ggml_scale_bias(ctx, ggml_mul(ctx, poly, tt), 1.0f, a3);
    poly = ggml_scale_bias(ctx, ggml_mul(ctx, poly, tt), 1.0f, a2);
    poly = ggml_scale_bias(ctx, ggml_mul(ctx, poly, tt), 1.0f, a1);
    poly = ggml_mul(ctx, poly, tt);
    struct ggml_tensor * e    = ggml_exp(ctx, ggml_scale(ctx, ggml_sqr(ctx, z), -1.0f));
    struct ggml_tensor * erfa = ggml_scale_bias(ctx, ggml_mul(ctx, poly, e), -1.0f, 1.0f); // erf(|z|)
    struct ggml_tensor * erf  = ggml_mul(ctx, ggml_sgn(ctx, z), erfa);
    return ggml_mul(ctx, x, ggml_scale_bias(ctx, erf, 0.5f, 0.5f));
}

// repeat_heads turns [a, b, n_kv, B] (contiguous) into [a, b, n_kv*r, B]
// with each kv head repeated r times consecutively (grouped-query attention
// as llama.cpp broadcasts it), using ops that have a backward pass.
static struct ggml_tensor * repeat_heads(struct ggml_context * ctx, struct ggml_tensor * x, int r) {
    if (r == 1) {
        return x;
    }
    const int64_t a = x->ne[0], b = x->ne[1], nkv = x->ne[2], B = x->ne[3];
    struct ggml_tensor * y = ggml_reshape_4d(ctx, x, a * b, 1, nkv, B);
    y = ggml_repeat_4d(ctx, y, a * b, r, nkv, B);
    return ggml_reshape_4d(ctx, y, a, b, nkv * r, B);
}

// rms_norm is x / sqrt(mean(x^2) + eps) over dim 0, from elementary ops.
// ggml's own RMS_NORM backward may run in place on its incoming gradient
// and then reads the overwritten values (wrong gradients at the pinned
// commit), so the training graph composes it.
static struct ggml_tensor * rms_norm(struct ggml_context * ctx, struct ggml_tensor * x, float eps) {
    struct ggml_tensor * ms = ggml_scale_bias(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, x)), 1.0f / (float) x->ne[0], eps);
    return ggml_div(ctx, x, ggml_repeat(ctx, ggml_sqrt(ctx, ms), x));
}

// mm multiplies a frozen weight [K, M] with activations [K, T, B] as one 2-D
// product: ggml's backward for quantized weights (out_prod_q_f32) does not
// broadcast over batch dimensions.
static struct ggml_tensor * mm(struct ggml_context * ctx, struct ggml_tensor * w, struct ggml_tensor * x) {
    const int64_t T = x->ne[1], B = x->ne[2];
    struct ggml_tensor * y = ggml_mul_mat(ctx, w, ggml_reshape_2d(ctx, x, x->ne[0], T * B));
    return ggml_reshape_3d(ctx, y, w->ne[1], T, B);
}

// tanh_stable is tanh(x) = sgn(x) (1 - e) / (1 + e) with e = exp(-2|x|),
// from operations ggml can differentiate (its TANH has no backward pass);
// e stays in (0, 1], so nothing overflows.
static struct ggml_tensor * tanh_stable(struct ggml_context * ctx, struct ggml_tensor * x) {
    struct ggml_tensor * e   = ggml_exp(ctx, ggml_scale(ctx, ggml_abs(ctx, x), -2.0f));
    struct ggml_tensor * num = ggml_scale_bias(ctx, e, -1.0f, 1.0f);
    struct ggml_tensor * den = ggml_scale_bias(ctx, e, 1.0f, 1.0f);
    return ggml_mul(ctx, ggml_sgn(ctx, x), ggml_div(ctx, num, den));
}

// softcap is cap * tanh(x / cap), gemma's soft-capping of scores.
static struct ggml_tensor * softcap(struct ggml_context * ctx, struct ggml_tensor * x, float cap) {
    return ggml_scale(ctx, tanh_stable(ctx, ggml_scale(ctx, x, 1.0f / cap)), cap);
}

// gelu_tanh is 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the GELU
// gemma's FFN gate uses (ggml_gelu, which has no backward pass).
static struct ggml_tensor * gelu_tanh(struct ggml_context * ctx, struct ggml_tensor * x) {
    struct ggml_tensor * x2    = ggml_sqr(ctx, x);
    struct ggml_tensor * inner = ggml_mul(ctx, x, ggml_scale_bias(ctx, x2, 0.044715f, 1.0f));
    struct ggml_tensor * th    = tanh_stable(ctx, ggml_scale(ctx, inner, 0.79788456080286535588f));
    return ggml_mul(ctx, x, ggml_scale_bias(ctx, th, 0.5f, 0.5f));
}

// head_view is n heads of hd values starting at value off of each row of
// the fused projection qkv [*, T, B], as a contiguous [hd, n, T, B]. The
// no-op reshape after the copy makes the backward pass hand the copy a
// contiguous gradient (ggml's CONT backward needs one; V is permuted next).
static struct ggml_tensor * head_view(struct ggml_context * ctx, struct ggml_tensor * qkv, int64_t hd, int64_t n, int64_t off) {
    struct ggml_tensor * v = ggml_view_4d(ctx, qkv, hd, n, qkv->ne[1], qkv->ne[2], hd * qkv->nb[0], qkv->nb[1], qkv->nb[2],
                                          off * qkv->nb[0]);
    v = ggml_cont(ctx, v);
    return ggml_reshape_4d(ctx, v, v->ne[0], v->ne[1], v->ne[2], v->ne[3]);
}

// pp_qkv projects cur [n_embd, T, B] to the heads q [hd, n_head, T, B] and
// k, v [hd, n_head_kv, T, B], QK-normed where the architecture does.
static void pp_qkv(pp_train * t, struct ggml_context * ctx, const pp_layer * L, struct ggml_tensor * cur,
                   struct ggml_tensor ** q, struct ggml_tensor ** k, struct ggml_tensor ** v) {
    const int64_t T = cur->ne[1], B = cur->ne[2], hd = t->n_embd_head;
    if (L->wqkv) {
        struct ggml_tensor * qkv = mm(ctx, L->wqkv, cur);
        *q = head_view(ctx, qkv, hd, t->n_head, 0);
        *k = head_view(ctx, qkv, hd, t->n_head_kv, hd * t->n_head);
        *v = head_view(ctx, qkv, hd, t->n_head_kv, hd * (t->n_head + t->n_head_kv));
    } else {
        *q = mm(ctx, L->wq, cur);
        *k = mm(ctx, L->wk, cur);
        *v = mm(ctx, L->wv, cur);
        if (L->bq) *q = ggml_add(ctx, *q, L->bq);
        if (L->bk) *k = ggml_add(ctx, *k, L->bk);
        if (L->bv) *v = ggml_add(ctx, *v, L->bv);
        *q = ggml_reshape_4d(ctx, *q, hd, t->n_head, T, B);
        *k = ggml_reshape_4d(ctx, *k, hd, t->n_head_kv, T, B);
        *v = ggml_reshape_4d(ctx, *v, hd, t->n_head_kv, T, B);
    }
    if (L->q_norm) {
        *q = ggml_mul(ctx, rms_norm(ctx, *q, t->eps), L->q_norm);
        *k = ggml_mul(ctx, rms_norm(ctx, *k, t->eps), L->k_norm);
    }
}

static bool pp_is_swa(const pp_train * t, int il) {
    const int n = t->a->swa_pattern;
    return t->n_swa > 0 && n > 0 && il % n < n - 1;
}

// pp_attention is layer il's self-attention over cur [n_embd, T, B],
// through the output projection: [n_embd, T, B].
static struct ggml_tensor * pp_attention(pp_train * t, struct ggml_context * ctx, int il, struct ggml_tensor * cur) {
    const pp_layer * L = &t->layers[il];
    const int64_t T = cur->ne[1], B = cur->ne[2], hd = t->n_embd_head;
    const int r = t->n_head / t->n_head_kv;
    const bool swa = pp_is_swa(t, il);
    const float base = swa ? t->freq_base_swa : t->freq_base, fscale = swa ? t->freq_scale_swa : t->freq_scale;
    struct ggml_tensor * q, * k, * v;
    pp_qkv(t, ctx, L, cur, &q, &k, &v);
    q = ggml_rope_ext(ctx, q, t->in[PP_IN_POS], t->rope_freqs, t->n_rot, t->rope_mode, t->n_ctx_orig,
                      base, fscale, 0.0f, t->attn_factor, 32.0f, 1.0f);
    k = ggml_rope_ext(ctx, k, t->in[PP_IN_POS], t->rope_freqs, t->n_rot, t->rope_mode, t->n_ctx_orig,
                      base, fscale, 0.0f, t->attn_factor, 32.0f, 1.0f);
    q = ggml_permute(ctx, q, 0, 2, 1, 3);                                          // [hd, T, nh, B]
    k = repeat_heads(ctx, ggml_cont(ctx, ggml_permute(ctx, k, 0, 2, 1, 3)), r);    // [hd, T, nh, B]
    struct ggml_tensor * vt = repeat_heads(ctx, ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3)), r); // [T, hd, nh, B]
    struct ggml_tensor * kq = ggml_mul_mat(ctx, k, q);                             // [T_k, T_q, nh, B]
    struct ggml_tensor * mask = t->in[PP_IN_KQMASK];
    if (swa && t->swa_mask) {
        mask = ggml_add(ctx, mask, t->swa_mask);
    }
    if (t->attn_softcap > 0) {
        kq = softcap(ctx, ggml_scale(ctx, kq, t->kq_scale), t->attn_softcap);
        kq = ggml_soft_max_ext(ctx, kq, mask, 1.0f, 0.0f);
    } else {
        kq = ggml_soft_max_ext(ctx, kq, mask, t->kq_scale, 0.0f);
    }
    struct ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);                          // [hd, T_q, nh, B]
    kqv = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));                      // [hd, nh, T, B]
    cur = ggml_reshape_3d(ctx, kqv, hd * t->n_head, T, B);
    return mm(ctx, L->wo, cur);
}

// pp_ffn is layer il's gated feed-forward network over cur [n_embd, T, B]:
// act(gate x) * (up x) through ffn_down, act SiLU or GELU (tanh form).
static struct ggml_tensor * pp_ffn(pp_train * t, struct ggml_context * ctx, const pp_layer * L, struct ggml_tensor * cur) {
    struct ggml_tensor * g, * u;
    if (t->a->fused_up) {
        struct ggml_tensor * gu = mm(ctx, L->ffn_up, cur); // [2 n_ff, T, B]: gate, then up
        const int64_t nff = gu->ne[0] / 2;
        g = ggml_cont(ctx, ggml_view_3d(ctx, gu, nff, gu->ne[1], gu->ne[2], gu->nb[1], gu->nb[2], 0));
        u = ggml_cont(ctx, ggml_view_3d(ctx, gu, nff, gu->ne[1], gu->ne[2], gu->nb[1], gu->nb[2], nff * gu->nb[0]));
    } else {
        g = mm(ctx, L->ffn_gate, cur);
        u = mm(ctx, L->ffn_up, cur);
    }
    g = t->a->gelu ? gelu_tanh(ctx, g) : ggml_silu(ctx, g);
    return mm(ctx, L->ffn_down, ggml_mul(ctx, g, u));
}

// pp_build_decoder runs the frozen decoder over x [n_embd, T, B] and returns
// the final normed hidden states [n_embd, T, B].
static struct ggml_tensor * pp_build_decoder(pp_train * t, struct ggml_context * ctx, struct ggml_tensor * x) {
    for (int il = 0; il < t->n_layer; il++) {
        const pp_layer * L = &t->layers[il];
        struct ggml_tensor * cur = pp_attention(t, ctx, il, ggml_mul(ctx, rms_norm(ctx, x, t->eps), L->attn_norm));
        if (L->attn_post_norm) {
            cur = ggml_mul(ctx, rms_norm(ctx, cur, t->eps), L->attn_post_norm);
        }
        x = ggml_add(ctx, x, cur);

        cur = pp_ffn(t, ctx, L, ggml_mul(ctx, rms_norm(ctx, x, t->eps), L->ffn_norm));
        if (L->ffn_post_norm) {
            cur = ggml_mul(ctx, rms_norm(ctx, cur, t->eps), L->ffn_post_norm);
        }
        x = ggml_add(ctx, x, cur);
    }
    return ggml_mul(ctx, rms_norm(ctx, x, t->eps), t->output_norm);
}

static int64_t pp_n_persona(const pp_train_cfg * c) { return c->n_persona > 0 ? c->n_persona : 1; }

// pp_build_input builds the decoder input [n_embd, T, B]: token embeddings
// at token positions, the instruction rows and the persona row at theirs.
// It also returns the persona rows [n_embd, 1, B].
static struct ggml_tensor * pp_build_input(pp_train * t, struct ggml_context * ctx, struct ggml_tensor ** rows_out) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch, D = t->n_embd;

    // plug-in: project every item, attend over them with the query
    struct ggml_tensor * h = t->in[PP_IN_HIST];                       // [d_enc, N, B]
    struct ggml_tensor * p = ggml_add(ctx, ggml_mul_mat(ctx, t->par[PP_P_W1], h), t->par[PP_P_B1]);
    p = gelu_erf(ctx, p);
    p = ggml_add(ctx, ggml_mul_mat(ctx, t->par[PP_P_W2], p), t->par[PP_P_B2]); // [D, N, B], before the scale

    struct ggml_tensor * q = t->in[PP_IN_QUERY];                      // [d_enc, 1, B]
    if (c->adapter) {
        struct ggml_tensor * qa = ggml_add(ctx, q, ggml_add(ctx, ggml_mul_mat(ctx, t->par[PP_P_ADAPT_W], q), t->par[PP_P_ADAPT_B]));
        struct ggml_tensor * nrm = ggml_sqrt(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, qa)));       // [1, 1, B]
        q = ggml_div(ctx, qa, ggml_repeat(ctx, nrm, qa));
    }
    struct ggml_tensor * s = ggml_mul_mat(ctx, h, q);                  // [N, 1, B]
    if (c->train_tau) {
        struct ggml_tensor * inv_tau = ggml_exp(ctx, ggml_scale(ctx, t->par[PP_P_LOGTAU], -1.0f));
        s = ggml_mul(ctx, s, ggml_repeat(ctx, inv_tau, s));
    } else {
        s = ggml_scale(ctx, s, 1.0f / c->tau);
    }
    s = ggml_add(ctx, s, t->in[PP_IN_HMASK]);
    struct ggml_tensor * w = ggml_soft_max(ctx, s);                    // [N, 1, B]
    // scaled after the transpose: ggml's scale needs a contiguous gradient
    // The reshape (a no-op shape) makes ggml's backward pass hand a contiguous
    // gradient to the bias addition below it (its repeat_back needs one).
    p = ggml_reshape_3d(ctx, p, p->ne[0], p->ne[1], p->ne[2]);
    struct ggml_tensor * pt = ggml_scale(ctx, ggml_cont(ctx, ggml_transpose(ctx, p)), c->scale); // [N, D, B]
    struct ggml_tensor * pu = ggml_mul_mat(ctx, pt, w);                // [D, 1, B]
    ggml_set_name(pu, "persona_rows");
    *rows_out = pu;

    // decoder input
    struct ggml_tensor * e = ggml_get_rows(ctx, t->tok_embd, t->in[PP_IN_TOKENS]); // [D, T*B]
    e = ggml_reshape_3d(ctx, e, D, T, B);
    e = ggml_mul(ctx, e, t->in[PP_IN_TOKMASK]);
    const float embd_scale = sqrtf((float) D);
    if (t->a->input_scale == PP_SCALE_TOKENS) {
        e = ggml_scale(ctx, e, embd_scale);
    }
    if (c->n_instr > 0) {
        struct ggml_tensor * it = ggml_cont(ctx, ggml_transpose(ctx, t->par[PP_P_INSTR])); // [n_instr, D]
        e = ggml_add(ctx, e, ggml_mul_mat(ctx, it, t->in[PP_IN_SEL_I]));                  // + [D, T, B]
    }
    // pu [R*D, 1, B] holds R rows of D; as [R, D, B] it places them:
    // [R, D, B] x [R, T, B] -> [D, T, B], nonzero only at the persona
    // positions. For R = 1 the reshape alone is that transpose.
    const int64_t R = pp_n_persona(c);
    struct ggml_tensor * place = R == 1 ? ggml_reshape_3d(ctx, pu, 1, D, B)
                                        : ggml_cont(ctx, ggml_transpose(ctx, ggml_reshape_3d(ctx, pu, D, R, B)));
    e = ggml_add(ctx, e, ggml_mul_mat(ctx, place, t->in[PP_IN_SEL_P]));
    if (t->a->input_scale == PP_SCALE_ALL) {
        e = ggml_scale(ctx, e, embd_scale);
    }
    return e;
}

static struct ggml_tensor * pp_output_weight(pp_train * t) {
    return t->output ? t->output : t->tok_embd;
}

// pp_logits multiplies hidden states [D, n] by the output weight, soft-caps
// them where the model does (gemma), and adds the learned EOS bias (a one-hot [V] times eos_bias_scale * theta, so that
// ggml's backward pass reaches theta through a broadcast multiply).
static struct ggml_tensor * pp_logits(pp_train * t, struct ggml_context * ctx, struct ggml_tensor * h) {
    struct ggml_tensor * logits = ggml_mul_mat(ctx, pp_output_weight(t), h);
    if (t->final_softcap > 0) {
        logits = softcap(ctx, logits, t->final_softcap);
    }
    if (t->cfg.eos_bias) {
        struct ggml_tensor * b = ggml_scale(ctx, t->par[PP_P_EOS_BIAS], t->cfg.eos_bias_scale);
        logits = ggml_add(ctx, logits, ggml_mul(ctx, t->in[PP_IN_EOSVEC], b));
    }
    return logits;
}

// pp_fill_swa_mask masks, for the sliding-window layers, every key at
// least n_swa positions before its query (llama.cpp's LLAMA_SWA_TYPE_STANDARD).
static void pp_fill_swa_mask(pp_train * t) {
    if (!t->swa_mask) {
        return;
    }
    const int64_t T = t->cfg.n_tokens;
    float * m = calloc((size_t) (T * T), sizeof(float));
    for (int64_t q = 0; q < T; q++) {
        for (int64_t k = 0; k < T; k++) {
            m[q * T + k] = q - k >= t->n_swa ? -INFINITY : 0.0f;
        }
    }
    ggml_backend_tensor_set(t->swa_mask, m, 0, (size_t) (T * T) * sizeof(float));
    free(m);
}

static bool pp_build(pp_train * t) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch, N = c->n_items, M = c->n_targets, D = t->n_embd;

    // inputs and parameters
    struct ggml_init_params sp = { (PP_IN_COUNT + PP_P_COUNT + 4) * ggml_tensor_overhead(), NULL, true };
    t->ctx_static = ggml_init(sp);
    struct ggml_context * cs = t->ctx_static;
    t->in[PP_IN_TOKENS]  = ggml_new_tensor_1d(cs, GGML_TYPE_I32, T * B);
    t->in[PP_IN_TOKMASK] = ggml_new_tensor_3d(cs, GGML_TYPE_F32, 1, T, B);
    t->in[PP_IN_POS]     = ggml_new_tensor_1d(cs, GGML_TYPE_I32, T);
    t->in[PP_IN_KQMASK]  = ggml_new_tensor_2d(cs, GGML_TYPE_F32, T, T);
    t->in[PP_IN_HIST]    = ggml_new_tensor_3d(cs, GGML_TYPE_F32, c->d_enc, N, B);
    t->in[PP_IN_HMASK]   = ggml_new_tensor_3d(cs, GGML_TYPE_F32, N, 1, B);
    t->in[PP_IN_QUERY]   = ggml_new_tensor_3d(cs, GGML_TYPE_F32, c->d_enc, 1, B);
    t->in[PP_IN_SEL_I]   = c->n_instr > 0 ? ggml_new_tensor_3d(cs, GGML_TYPE_F32, c->n_instr, T, B) : NULL;
    t->in[PP_IN_SEL_P]   = ggml_new_tensor_3d(cs, GGML_TYPE_F32, pp_n_persona(c), T, B);
    t->in[PP_IN_TGT_POS] = ggml_new_tensor_1d(cs, GGML_TYPE_I32, M * B);
    t->in[PP_IN_LABELS]  = ggml_new_tensor_2d(cs, GGML_TYPE_F32, t->n_vocab, M * B);
    t->in[PP_IN_LSCALE]  = ggml_new_tensor_1d(cs, GGML_TYPE_F32, 1);
    t->in[PP_IN_EOSVEC]  = c->eos_bias ? ggml_new_tensor_1d(cs, GGML_TYPE_F32, t->n_vocab) : NULL;
    t->swa_mask = t->n_swa > 0 && t->n_swa < T ? ggml_new_tensor_2d(cs, GGML_TYPE_F32, T, T) : NULL;
    for (int i = 0; i < PP_IN_COUNT; i++) {
        if (t->in[i]) {
            ggml_set_input(t->in[i]);
        }
    }
    t->par[PP_P_W1] = ggml_new_tensor_2d(cs, GGML_TYPE_F32, c->d_enc, D);
    t->par[PP_P_B1] = ggml_new_tensor_1d(cs, GGML_TYPE_F32, D);
    t->par[PP_P_W2] = ggml_new_tensor_2d(cs, GGML_TYPE_F32, D, pp_n_persona(c) * D);
    t->par[PP_P_B2] = ggml_new_tensor_1d(cs, GGML_TYPE_F32, pp_n_persona(c) * D);
    t->par[PP_P_INSTR] = c->n_instr > 0 ? ggml_new_tensor_2d(cs, GGML_TYPE_F32, D, c->n_instr) : NULL;
    if (c->adapter) {
        t->par[PP_P_ADAPT_W] = ggml_new_tensor_2d(cs, GGML_TYPE_F32, c->d_enc, c->d_enc);
        t->par[PP_P_ADAPT_B] = ggml_new_tensor_1d(cs, GGML_TYPE_F32, c->d_enc);
    }
    if (c->train_tau) {
        t->par[PP_P_LOGTAU] = ggml_new_tensor_1d(cs, GGML_TYPE_F32, 1);
    }
    if (c->eos_bias) {
        t->par[PP_P_EOS_BIAS] = ggml_new_tensor_1d(cs, GGML_TYPE_F32, 1);
    }
    for (int i = 0; i < PP_P_COUNT; i++) {
        if (t->par[i]) {
            ggml_set_param(t->par[i]);
        }
    }
    t->buf_static = ggml_backend_alloc_ctx_tensors(cs, t->backend);
    if (!t->buf_static) {
        pp_errf(t, "cannot allocate the inputs and parameters");
        return false;
    }
    ggml_backend_buffer_clear(t->buf_static, 0);
    pp_fill_swa_mask(t);

    // forward graph
    struct ggml_init_params cp = { PP_GRAPH_SIZE * ggml_tensor_overhead() + 3 * ggml_graph_overhead_custom(PP_GRAPH_SIZE, true), NULL, true };
    t->ctx_compute = ggml_init(cp);
    struct ggml_context * ctx = t->ctx_compute;
    struct ggml_tensor * x = pp_build_input(t, ctx, &t->rows);
    ggml_set_output(t->rows);
    x = pp_build_decoder(t, ctx, x);
    struct ggml_tensor * xf = ggml_reshape_2d(ctx, x, D, T * B);
    struct ggml_tensor * xt = ggml_get_rows(ctx, xf, t->in[PP_IN_TGT_POS]);   // [D, M*B]
    struct ggml_tensor * logits = pp_logits(t, ctx, xt); // [V, M*B]
    struct ggml_tensor * ce = ggml_cross_entropy_loss(ctx, logits, t->in[PP_IN_LABELS]);
    t->loss = ggml_mul(ctx, ce, t->in[PP_IN_LSCALE]);
    ggml_set_name(t->loss, "loss");
    ggml_set_loss(t->loss);
    ggml_set_output(t->loss);

    t->gf = ggml_new_graph_custom(ctx, PP_GRAPH_SIZE, true);
    ggml_build_forward_expand(t->gf, t->loss);

    // gradient accumulators for the parameters and the loss
    const int n_nodes = ggml_graph_n_nodes(t->gf);
    struct ggml_tensor ** accs = calloc((size_t) n_nodes, sizeof(*accs));
    struct ggml_init_params gp = { (size_t) (PP_P_COUNT + 2) * ggml_tensor_overhead(), NULL, true };
    t->ctx_grads = ggml_init(gp);
    for (int i = 0; i < n_nodes; i++) {
        struct ggml_tensor * node = ggml_graph_node(t->gf, i);
        if (node->flags & (GGML_TENSOR_FLAG_PARAM | GGML_TENSOR_FLAG_LOSS)) {
            accs[i] = ggml_new_tensor(t->ctx_grads, GGML_TYPE_F32, GGML_MAX_DIMS, node->ne);
            for (int p = 0; p < PP_P_COUNT; p++) {
                if (t->par[p] == node) {
                    t->gradacc[p] = accs[i];
                }
            }
        }
    }
    t->buf_grads = ggml_backend_alloc_ctx_tensors(t->ctx_grads, t->backend);
    if (!t->buf_grads) {
        free(accs);
        pp_errf(t, "cannot allocate the gradients");
        return false;
    }
    t->gb = ggml_graph_dup(ctx, t->gf, true);
    ggml_build_backward_expand(ctx, t->gb, accs);
    free(accs);

    t->galloc = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
    if (!ggml_gallocr_alloc_graph(t->galloc, t->gb)) {
        pp_errf(t, "cannot allocate the training graph (T=%lld, B=%lld): lower the batch size or lengths",
                (long long) T, (long long) B);
        return false;
    }
    return true;
}

// ---- model ------------------------------------------------------------------

// pp_read_arch finds the model's architecture in the table.
static bool pp_read_arch(pp_train * t, const struct gguf_context * g) {
    int64_t ai = gguf_find_key(g, "general.architecture");
    if (ai < 0 || gguf_get_kv_type(g, ai) != GGUF_TYPE_STRING) {
        pp_errf(t, "the model has no general.architecture");
        return false;
    }
    snprintf(t->arch, sizeof(t->arch), "%s", gguf_get_val_str(g, ai));
    t->a = pp_find_arch(t->arch);
    if (!t->a) {
        char list[256];
        pp_train_archs(list, sizeof(list));
        pp_errf(t, "training supports %s models, not %s", list, t->arch);
        return false;
    }
    t->rope_mode = t->a->rope_mode;
    return true;
}

// pp_read_rope reads rope scaling as llama.cpp does for the architectures
// of the table: linear (and longrope, whose factors are tensors) scale
// frequencies by 1/factor, none does not scale, YaRN is refused.
static bool pp_read_rope(pp_train * t, const struct gguf_context * g) {
    t->freq_base = 10000.0f;
    kv_f32(g, t->arch, "rope.freq_base", &t->freq_base);
    t->n_ctx_orig = 0;
    kv_u32(g, t->arch, "context_length", &t->n_ctx_orig);
    kv_u32(g, t->arch, "rope.scaling.original_context_length", &t->n_ctx_orig);
    t->attn_factor = 1.0f;
    kv_f32(g, t->arch, "rope.scaling.attn_factor", &t->attn_factor);
    float factor = 0.0f;
    kv_f32(g, t->arch, "rope.scaling.factor", &factor);
    t->freq_scale = factor > 0 ? 1.0f / factor : 1.0f;
    int64_t si = kv_find(g, t->arch, "rope.scaling.type");
    if (si >= 0 && gguf_get_kv_type(g, si) == GGUF_TYPE_STRING) {
        const char * st = gguf_get_val_str(g, si);
        if (strcmp(st, "none") == 0) {
            t->freq_scale = 1.0f;
        } else if (strcmp(st, "linear") != 0 && strcmp(st, "longrope") != 0) {
            pp_errf(t, "rope scaling %s is not supported for training (linear, longrope or none)", st);
            return false;
        }
    }
    // gemma3's sliding-window layers rope with base 10000, unscaled
    const bool gemma3_swa = strcmp(t->arch, "gemma3") == 0 && t->n_swa > 0;
    t->freq_base_swa  = gemma3_swa ? 10000.0f : t->freq_base;
    t->freq_scale_swa = gemma3_swa ? 1.0f : t->freq_scale;
    return true;
}

// pp_read_gemma reads the sliding window, the soft-caps and the attention
// scale (llama.cpp derives query_pre_attn_scalar from the layer count:
// n_embd / n_head for the 27B models, the head width otherwise).
static void pp_read_gemma(pp_train * t, const struct gguf_context * g) {
    const bool g2 = strcmp(t->arch, "gemma2") == 0;
    t->n_swa = g2 ? 4096 : 0;
    kv_u32(g, t->arch, "attention.sliding_window", &t->n_swa);
    t->attn_softcap = g2 ? 50.0f : 0.0f;
    t->final_softcap = g2 ? 30.0f : 0.0f;
    if (g2) {
        kv_f32(g, t->arch, "attn_logit_softcapping", &t->attn_softcap);
    }
    kv_f32(g, t->arch, "final_logit_softcapping", &t->final_softcap);
    const bool big = t->n_layer == (g2 ? 46 : 62);
    t->kq_scale = 1.0f / sqrtf(big ? (float) (t->n_embd / t->n_head) : (float) t->n_embd_head);
}

// pp_read_hparams reads the architecture and the hyper-parameters the
// graph needs, and checks them before any weight is read.
static bool pp_read_hparams(pp_train * t, const struct gguf_context * g) {
    if (!pp_read_arch(t, g)) {
        return false;
    }
    if (!kv_u32(g, t->arch, "embedding_length", &t->n_embd) || !kv_u32(g, t->arch, "block_count", &t->n_layer) ||
        !kv_u32(g, t->arch, "attention.head_count", &t->n_head)) {
        pp_errf(t, "the model lacks %s.embedding_length, block_count or attention.head_count", t->arch);
        return false;
    }
    t->n_head_kv = t->n_head;
    kv_u32(g, t->arch, "attention.head_count_kv", &t->n_head_kv);
    if (t->n_layer <= 0 || t->n_layer > PP_MAX_LAYERS || t->n_head <= 0 || t->n_head_kv <= 0 || t->n_embd <= 0 ||
        t->n_embd % t->n_head != 0 || t->n_head % t->n_head_kv != 0) {
        pp_errf(t, "unsupported shape: n_embd %d, n_layer %d, n_head %d, n_head_kv %d", t->n_embd, t->n_layer, t->n_head, t->n_head_kv);
        return false;
    }
    t->n_embd_head = t->n_embd / t->n_head;
    kv_u32(g, t->arch, "attention.key_length", &t->n_embd_head);
    int32_t hv = t->n_embd_head;
    kv_u32(g, t->arch, "attention.value_length", &hv);
    t->n_rot = t->n_embd_head;
    kv_u32(g, t->arch, "rope.dimension_count", &t->n_rot);
    if (t->n_embd_head <= 0 || hv != t->n_embd_head || t->n_rot <= 0 || t->n_rot > t->n_embd_head || t->n_rot % 2 != 0) {
        pp_errf(t, "unsupported heads: key length %d, value length %d, rope dimensions %d", t->n_embd_head, hv, t->n_rot);
        return false;
    }
    t->eps = 1e-5f;
    kv_f32(g, t->arch, "attention.layer_norm_rms_epsilon", &t->eps);
    t->kq_scale = 1.0f / sqrtf((float) t->n_embd_head);
    if (t->a->gemma) {
        pp_read_gemma(t, g);
    }
    return pp_read_rope(t, g);
}

#define PP_GLOBAL_REFS 6
#define PP_LAYER_REFS  18

// pp_weight_refs lists the weights to load for the architecture; returns
// how many.
static int pp_weight_refs(pp_train * t, pp_wref * refs) {
    const pp_arch * a = t->a;
    int k = 0;
#define REF(ptr, req, ...) do { snprintf(refs[k].name, sizeof(refs[k].name), __VA_ARGS__); refs[k].dst = (ptr); refs[k].required = (req); k++; } while (0)
    REF(&t->tok_embd, true, "token_embd.weight");
    REF(&t->output_norm, true, "output_norm.weight");
    REF(&t->output, false, "output.weight");
    // llama 3.1+ carries rope_freqs; phi3 LongRoPE the short factors, which
    // llama.cpp uses while the context is no longer than the original one
    REF(&t->rope_freqs, false, a->fused_qkv ? "rope_factors_short.weight" : "rope_freqs.weight");
    for (int il = 0; il < t->n_layer; il++) {
        pp_layer * L = &t->layers[il];
        REF(&L->attn_norm, true, "blk.%d.attn_norm.weight", il);
        if (a->fused_qkv) {
            REF(&L->wqkv, true, "blk.%d.attn_qkv.weight", il);
        } else {
            REF(&L->wq, true, "blk.%d.attn_q.weight", il);
            REF(&L->wk, true, "blk.%d.attn_k.weight", il);
            REF(&L->wv, true, "blk.%d.attn_v.weight", il);
            REF(&L->bq, false, "blk.%d.attn_q.bias", il);
            REF(&L->bk, false, "blk.%d.attn_k.bias", il);
            REF(&L->bv, false, "blk.%d.attn_v.bias", il);
        }
        REF(&L->wo, true, "blk.%d.attn_output.weight", il);
        if (a->qk_norm) {
            REF(&L->q_norm, true, "blk.%d.attn_q_norm.weight", il);
            REF(&L->k_norm, true, "blk.%d.attn_k_norm.weight", il);
        }
        if (a->post_norms) {
            REF(&L->attn_post_norm, true, "blk.%d.post_attention_norm.weight", il);
            REF(&L->ffn_post_norm, true, "blk.%d.post_ffw_norm.weight", il);
        }
        REF(&L->ffn_norm, true, "blk.%d.ffn_norm.weight", il);
        if (!a->fused_up) {
            REF(&L->ffn_gate, true, "blk.%d.ffn_gate.weight", il);
        }
        REF(&L->ffn_up, true, "blk.%d.ffn_up.weight", il);
        REF(&L->ffn_down, true, "blk.%d.ffn_down.weight", il);
    }
#undef REF
    return k;
}

// pp_shape_is reports whether w is [n0, n1] (n1 = 0: a vector of n0).
static bool pp_shape_is(const struct ggml_tensor * w, int64_t n0, int64_t n1) {
    if (!w) {
        return true;
    }
    return w->ne[0] == n0 && w->ne[1] == (n1 > 0 ? n1 : 1) && w->ne[2] == 1 && w->ne[3] == 1;
}

// pp_check_layer checks one layer's weights against the hyper-parameters,
// so that a malformed file is an error, not a ggml assertion.
static bool pp_check_layer(pp_train * t, int il) {
    const pp_layer * L = &t->layers[il];
    const int64_t D = t->n_embd, hd = t->n_embd_head, nq = hd * t->n_head, nkv = hd * t->n_head_kv;
    const int64_t nff = L->ffn_down->ne[0];
    const bool ok = pp_shape_is(L->attn_norm, D, 0) && pp_shape_is(L->wq, D, nq) && pp_shape_is(L->wk, D, nkv) &&
        pp_shape_is(L->wv, D, nkv) && pp_shape_is(L->bq, nq, 0) && pp_shape_is(L->bk, nkv, 0) && pp_shape_is(L->bv, nkv, 0) &&
        pp_shape_is(L->wqkv, D, nq + 2 * nkv) && pp_shape_is(L->wo, nq, D) && pp_shape_is(L->q_norm, hd, 0) &&
        pp_shape_is(L->k_norm, hd, 0) && pp_shape_is(L->attn_post_norm, D, 0) && pp_shape_is(L->ffn_post_norm, D, 0) &&
        pp_shape_is(L->ffn_norm, D, 0) && pp_shape_is(L->ffn_gate, D, nff) &&
        pp_shape_is(L->ffn_up, D, t->a->fused_up ? 2 * nff : nff) && pp_shape_is(L->ffn_down, nff, D);
    if (!ok) {
        pp_errf(t, "layer %d's weights do not have the shapes of a %s model with n_embd %lld, %d heads of %lld (%d kv heads)",
                il, t->arch, (long long) D, t->n_head, (long long) hd, t->n_head_kv);
    }
    return ok;
}

static bool pp_check_shapes(pp_train * t) {
    if (t->tok_embd->ne[0] != t->n_embd) {
        pp_errf(t, "token_embd has width %lld, n_embd is %d", (long long) t->tok_embd->ne[0], t->n_embd);
        return false;
    }
    t->n_vocab = (int32_t) t->tok_embd->ne[1];
    if (!pp_shape_is(t->output_norm, t->n_embd, 0) || !pp_shape_is(t->output, t->n_embd, t->n_vocab)) {
        pp_errf(t, "output_norm or output do not match n_embd %d and the vocabulary of %d", t->n_embd, t->n_vocab);
        return false;
    }
    if (t->rope_freqs && (ggml_n_dims(t->rope_freqs) != 1 || t->rope_freqs->ne[0] < t->n_rot / 2)) {
        pp_errf(t, "%s has %lld values, the rope needs %d", t->rope_freqs->name, (long long) t->rope_freqs->ne[0], t->n_rot / 2);
        return false;
    }
    for (int il = 0; il < t->n_layer; il++) {
        if (!pp_check_layer(t, il)) {
            return false;
        }
    }
    return true;
}

int32_t pp_train_check(const char * model_path, char * err, int32_t err_len) {
    pp_train * t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, (size_t) err_len, "out of memory");
        return -1;
    }
    struct gguf_init_params gip = { true, NULL };
    struct gguf_context * g = gguf_init_from_file(model_path, gip);
    int32_t rc = 0;
    if (!g) {
        snprintf(err, (size_t) err_len, "cannot read %s as GGUF", model_path);
        rc = -1;
    } else if (!pp_read_hparams(t, g)) {
        snprintf(err, (size_t) err_len, "%s", t->err);
        rc = -1;
    }
    if (g) {
        gguf_free(g);
    }
    free(t);
    return rc;
}

// ---- lifecycle ---------------------------------------------------------------

pp_train * pp_train_new(const char * model_path, const pp_train_cfg * cfg, char * err, int32_t err_len) {
    pp_train * t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, (size_t) err_len, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    const pp_train_cfg * c = &t->cfg;
    if (c->n_batch <= 0 || c->n_tokens <= 1 || c->n_items <= 0 || c->n_targets <= 0 || c->d_enc <= 0 ||
        c->n_instr < 0 || c->n_persona < 0 || !(c->scale > 0) || !(c->tau > 0) || (c->eos_bias && !(c->eos_bias_scale > 0))) {
        snprintf(err, (size_t) err_len, "invalid training shape or plug parameters");
        free(t);
        return NULL;
    }

    struct ggml_context * meta = NULL;
    struct gguf_init_params gip = { true, &meta };
    struct gguf_context * g = gguf_init_from_file(model_path, gip);
    if (!g) {
        snprintf(err, (size_t) err_len, "cannot read %s as GGUF", model_path);
        free(t);
        return NULL;
    }
    bool ok = pp_read_hparams(t, g);
    if (!ok) {
        goto done;
    }
    ok = false;

    t->backend = ggml_backend_cpu_init();
    if (!t->backend) {
        pp_errf(t, "cannot start the CPU backend");
        goto done;
    }
    ggml_backend_cpu_set_n_threads(t->backend, c->n_threads > 0 ? c->n_threads : 1);

    {
        pp_wref * refs = calloc((size_t) (PP_GLOBAL_REFS + PP_LAYER_REFS * t->n_layer), sizeof(*refs));
        int k = pp_weight_refs(t, refs);
        bool loaded = pp_load_weights(t, model_path, g, meta, refs, k);
        free(refs);
        if (!loaded) {
            goto done;
        }
    }
    if (!pp_check_shapes(t)) {
        goto done;
    }
    ok = pp_build(t);

done:
    gguf_free(g);
    ggml_free(meta);
    if (!ok) {
        snprintf(err, (size_t) err_len, "%s", t->err);
        pp_train_free(t);
        return NULL;
    }
    return t;
}

void pp_train_free(pp_train * t) {
    if (!t) {
        return;
    }
    if (t->galloc_logits) ggml_gallocr_free(t->galloc_logits);
    if (t->ctx_logits) ggml_free(t->ctx_logits);
    if (t->galloc) ggml_gallocr_free(t->galloc);
    if (t->ctx_compute) ggml_free(t->ctx_compute);
    if (t->buf_grads) ggml_backend_buffer_free(t->buf_grads);
    if (t->ctx_grads) ggml_free(t->ctx_grads);
    if (t->buf_static) ggml_backend_buffer_free(t->buf_static);
    if (t->ctx_static) ggml_free(t->ctx_static);
    if (t->buf_w) ggml_backend_buffer_free(t->buf_w);
    if (t->ctx_w) ggml_free(t->ctx_w);
    if (t->backend) ggml_backend_free(t->backend);
    free(t);
}

// ---- access ------------------------------------------------------------------

void * pp_train_input(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_IN_COUNT || !t->in[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->in[which]);
    return t->in[which]->data;
}

float * pp_train_param(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_P_COUNT || !t->par[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->par[which]);
    return (float *) t->par[which]->data;
}

float * pp_train_grad(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_P_COUNT || !t->gradacc[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->gradacc[which]);
    return (float *) t->gradacc[which]->data;
}

float * pp_train_rows(pp_train * t) { return (float *) t->rows->data; }

int32_t pp_train_compute(pp_train * t, bool backward, float * loss) {
    enum ggml_status st;
    if (backward) {
        ggml_graph_reset(t->gb);
        st = ggml_backend_graph_compute(t->backend, t->gb);
    } else {
        st = ggml_backend_graph_compute(t->backend, t->gf);
    }
    if (st != GGML_STATUS_SUCCESS) {
        pp_errf(t, "graph compute failed (%d)", (int) st);
        return -1;
    }
    *loss = *(float *) t->loss->data;
    return 0;
}

int32_t pp_train_logits(pp_train * t, float * out, int64_t n) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch;
    if (n != (int64_t) t->n_vocab * T * B) {
        pp_errf(t, "logits buffer of %lld floats, need %lld", (long long) n, (long long) t->n_vocab * T * B);
        return -1;
    }
    if (!t->g_logits) {
        struct ggml_init_params cp = { PP_GRAPH_SIZE * ggml_tensor_overhead() + ggml_graph_overhead_custom(PP_GRAPH_SIZE, false), NULL, true };
        t->ctx_logits = ggml_init(cp);
        struct ggml_tensor * rows = NULL;
        struct ggml_tensor * x = pp_build_input(t, t->ctx_logits, &rows);
        x = pp_build_decoder(t, t->ctx_logits, x);
        struct ggml_tensor * xf = ggml_reshape_2d(t->ctx_logits, x, t->n_embd, T * B);
        t->logits_all = pp_logits(t, t->ctx_logits, xf);
        ggml_set_output(t->logits_all);
        t->g_logits = ggml_new_graph_custom(t->ctx_logits, PP_GRAPH_SIZE, false);
        ggml_build_forward_expand(t->g_logits, t->logits_all);
        t->galloc_logits = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
        if (!ggml_gallocr_alloc_graph(t->galloc_logits, t->g_logits)) {
            pp_errf(t, "cannot allocate the logits graph");
            return -1;
        }
    }
    if (ggml_backend_graph_compute(t->backend, t->g_logits) != GGML_STATUS_SUCCESS) {
        pp_errf(t, "logits graph compute failed");
        return -1;
    }
    memcpy(out, t->logits_all->data, (size_t) n * sizeof(float));
    return 0;
}
