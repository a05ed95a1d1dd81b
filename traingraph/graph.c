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
#define PP_MAX_DEVICES 8
#define PP_MAX_OPS 96

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

// pp_op_place counts where the scheduler put one op of the training graph.
typedef struct pp_op_place {
    char op[32];
    int32_t nodes, on_cpu, unsupported;
} pp_op_place;

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

    // backends: the devices of cfg.devices in order, then the CPU (last,
    // as ggml's scheduler wants it); weights, one context per backend
    int n_dev;
    ggml_backend_t backends[PP_MAX_DEVICES + 1];
    ggml_backend_t backend;            // the CPU backend, backends[n_dev]
    int home_par;                      // backend of the parameters and gradients
    struct ggml_context * ctx_w[PP_MAX_DEVICES + 1]; // frozen weights
    ggml_backend_buffer_t buf_w[PP_MAX_DEVICES + 1];
    struct ggml_context * ctx_out;     // a tied output weight copied to a device
    ggml_backend_buffer_t buf_out;
    struct ggml_context * ctx_in;      // inputs (host memory)
    ggml_backend_buffer_t buf_in;
    struct ggml_context * ctx_static;  // parameters
    ggml_backend_buffer_t buf_static;
    struct ggml_context * ctx_grads;   // gradient accumulators
    ggml_backend_buffer_t buf_grads;
    struct ggml_context * ctx_compute; // training graph tensors (allocated by the scheduler)
    ggml_backend_sched_t sched;

    // host copies of parameters and gradients that live on a device (else
    // the tensors' own memory), and of the persona rows of the last compute
    bool par_mirrored;
    float * par_host[PP_P_COUNT];
    float * grad_host[PP_P_COUNT];
    float * rows_host;
    pp_op_place place[PP_MAX_OPS];
    int n_place, n_splits;

    struct ggml_tensor * in[PP_IN_COUNT];
    struct ggml_tensor * par[PP_P_COUNT];
    struct ggml_tensor * gradacc[PP_P_COUNT];
    struct ggml_tensor * loss;
    struct ggml_tensor * rows;

    struct ggml_cgraph * gb; // forward + backward

    // the forward-only graph (Compute without backward), built on first use
    struct ggml_context * ctx_eval;
    ggml_backend_sched_t sched_eval;
    struct ggml_cgraph * gf;
    struct ggml_tensor * loss_eval, * rows_eval;

    // the all-positions logits graph (tests), built on first use
    struct ggml_context * ctx_logits;
    ggml_backend_sched_t sched_logits;
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

// pp_layer_home is the backend of block il (il = n_layer: the output
// layer) as llama.cpp places layers with -ngl: the last n_gpu_layers blocks
// on the devices, the output layer too when n_gpu_layers exceeds the block
// count, the offloaded layers split evenly over the devices in order
// (llama.cpp splits by free memory by default).
static int pp_layer_home(const pp_train * t, int il) {
    if (t->n_dev == 0) {
        return 0;
    }
    const int n_layer = t->n_layer;
    const int ngl = t->cfg.n_gpu_layers < 0 ? n_layer + 1 : t->cfg.n_gpu_layers;
    const int start = ngl > n_layer ? 0 : n_layer - ngl;
    const int act = ngl < n_layer + 1 ? ngl : n_layer + 1;
    if (il < start || il - start >= act) {
        return t->n_dev;
    }
    return (int) ((int64_t) (il - start) * t->n_dev / act);
}

// pp_weight_home is the backend of a weight: blocks by their index,
// rope_freqs (or LongRoPE's factors) with the last block, the token
// embeddings on the CPU (as llama.cpp keeps its input layer), everything
// else with the output layer.
static int pp_weight_home(const pp_train * t, const char * name) {
    int il;
    if (sscanf(name, "blk.%d.", &il) == 1) {
        return pp_layer_home(t, il);
    }
    if (strncmp(name, "token_embd.", 11) == 0) {
        return t->n_dev;
    }
    if (strncmp(name, "rope_freqs.", 11) == 0 || strncmp(name, "rope_factors_", 13) == 0) {
        return pp_layer_home(t, t->n_layer - 1);
    }
    return pp_layer_home(t, t->n_layer);
}

// pp_alloc_weights allocates each backend's weight context in that
// backend's memory, marked as weights for the scheduler.
static bool pp_alloc_weights(pp_train * t) {
    for (int b = 0; b <= t->n_dev; b++) {
        if (!t->ctx_w[b] || !ggml_get_first_tensor(t->ctx_w[b])) {
            continue;
        }
        t->buf_w[b] = ggml_backend_alloc_ctx_tensors(t->ctx_w[b], t->backends[b]);
        if (!t->buf_w[b]) {
            pp_errf(t, "cannot allocate the weights in the memory of %s: offload fewer layers (-ngl)",
                    ggml_backend_name(t->backends[b]));
            return false;
        }
        ggml_backend_buffer_set_usage(t->buf_w[b], GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    }
    return true;
}

static bool pp_load_weights(pp_train * t, const char * path, struct gguf_context * g, struct ggml_context * meta,
                            pp_wref * refs, int n_refs) {
    struct ggml_init_params ip = { (size_t) (n_refs + 8) * ggml_tensor_overhead(), NULL, true };
    for (int b = 0; b <= t->n_dev; b++) {
        t->ctx_w[b] = ggml_init(ip);
        if (!t->ctx_w[b]) {
            pp_errf(t, "ggml_init failed");
            return false;
        }
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
        struct ggml_context * ctx = t->ctx_w[pp_weight_home(t, refs[i].name)];
        struct ggml_tensor * w = ggml_new_tensor(ctx, pp_train_type(m->type, ggml_n_dims(m)), GGML_MAX_DIMS, m->ne);
        ggml_set_name(w, refs[i].name);
        *refs[i].dst = w;
    }
    if (!pp_alloc_weights(t)) {
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
            ggml_backend_tensor_set(w, raw, 0, nbytes);
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
        ggml_backend_tensor_set(w, tmp, 0, (size_t) n * sizeof(float)); // conversions only go to F32
    }
    free(tmp);
    free(raw);
    free(src);
    fclose(f);
    return ok;
}

// pp_tie_output gives a model without output.weight (tied embeddings) a
// copy of token_embd on the output layer's device, as llama.cpp does, so
// that the logits are not computed next to the input layer on the CPU.
static bool pp_tie_output(pp_train * t) {
    const int home = pp_layer_home(t, t->n_layer);
    if (t->output || home == t->n_dev) {
        return true;
    }
    struct ggml_init_params ip = { 2 * ggml_tensor_overhead(), NULL, true };
    t->ctx_out = ggml_init(ip);
    if (!t->ctx_out) {
        pp_errf(t, "ggml_init failed");
        return false;
    }
    struct ggml_tensor * o = ggml_dup_tensor(t->ctx_out, t->tok_embd);
    ggml_set_name(o, "output.weight (token_embd)");
    t->buf_out = ggml_backend_alloc_ctx_tensors(t->ctx_out, t->backends[home]);
    if (!t->buf_out) {
        pp_errf(t, "cannot allocate the output weight in the memory of %s: offload fewer layers (-ngl)",
                ggml_backend_name(t->backends[home]));
        return false;
    }
    ggml_backend_buffer_set_usage(t->buf_out, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_tensor_set(o, t->tok_embd->data, 0, ggml_nbytes(o)); // token_embd is in host memory
    t->output = o;
    return true;
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

// pp_rope rotates x [hd, heads, T, B] (contiguous) by the position of each
// token (PP_IN_POS [T*B]) as a 3-D [hd, heads, T*B] tensor: the shape
// llama.cpp ropes, and the one every backend agrees on (the CPU reads one
// position per ne2 index for any ne3, Vulkan one per row of ne2*ne3). The
// frequencies: base and scale of the layer (gemma3's sliding-window layers
// differ), the model's rope_freqs / LongRoPE factors and attention factor.
static struct ggml_tensor * pp_rope(pp_train * t, struct ggml_context * ctx, struct ggml_tensor * x, float base,
                                    float fscale) {
    const int64_t hd = x->ne[0], nh = x->ne[1], T = x->ne[2], B = x->ne[3];
    struct ggml_tensor * y = ggml_reshape_3d(ctx, x, hd, nh, T * B);
    y = ggml_rope_ext(ctx, y, t->in[PP_IN_POS], t->rope_freqs, t->n_rot, t->rope_mode, t->n_ctx_orig,
                      base, fscale, 0.0f, t->attn_factor, 32.0f, 1.0f);
    return ggml_reshape_4d(ctx, y, hd, nh, T, B);
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
// view is 2-D over the T*B rows: its backward pass (ACC) then writes with
// the strides of qkv itself, the only ones ggml's Vulkan ACC honours (it
// reads no fourth dimension and indexes the destination with the view's
// strides; a 4-D view gave wrong gradients there). The no-op reshape after
// the copy makes the backward pass hand the copy a contiguous gradient
// (ggml's CONT backward needs one; V is permuted next).
static struct ggml_tensor * head_view(struct ggml_context * ctx, struct ggml_tensor * qkv, int64_t hd, int64_t n, int64_t off) {
    const int64_t T = qkv->ne[1], B = qkv->ne[2];
    struct ggml_tensor * rows = ggml_reshape_2d(ctx, qkv, qkv->ne[0], T * B);
    struct ggml_tensor * v = ggml_view_2d(ctx, rows, hd * n, T * B, rows->nb[1], off * rows->nb[0]);
    v = ggml_cont(ctx, v);
    return ggml_reshape_4d(ctx, v, hd, n, T, B);
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
    q = pp_rope(t, ctx, q, base, fscale);
    k = pp_rope(t, ctx, k, base, fscale);
    // contiguous: ggml's Vulkan MUL_MAT converts a non-contiguous operand to F16
    q = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));                          // [hd, T, nh, B]
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

// pp_forward builds the forward pass in ctx: the plug-in, the frozen
// decoder and the batch's loss. It returns the loss and the persona rows.
static struct ggml_tensor * pp_forward(pp_train * t, struct ggml_context * ctx, struct ggml_tensor ** rows) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch, D = t->n_embd;
    struct ggml_tensor * x = pp_build_input(t, ctx, rows);
    ggml_set_output(*rows);
    x = pp_build_decoder(t, ctx, x);
    struct ggml_tensor * xf = ggml_reshape_2d(ctx, x, D, T * B);
    struct ggml_tensor * xt = ggml_get_rows(ctx, xf, t->in[PP_IN_TGT_POS]);   // [D, M*B]
    struct ggml_tensor * logits = pp_logits(t, ctx, xt); // [V, M*B]
    struct ggml_tensor * ce = ggml_cross_entropy_loss(ctx, logits, t->in[PP_IN_LABELS]);
    struct ggml_tensor * loss = ggml_mul(ctx, ce, t->in[PP_IN_LSCALE]);
    ggml_set_name(loss, "loss");
    ggml_set_loss(loss);
    ggml_set_output(loss);
    return loss;
}

// pp_new_inputs creates the graph's inputs in host memory (the scheduler
// copies them to the devices that read them).
static bool pp_new_inputs(pp_train * t) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch, N = c->n_items, M = c->n_targets;
    struct ggml_init_params sp = { (PP_IN_COUNT + 4) * ggml_tensor_overhead(), NULL, true };
    t->ctx_in = ggml_init(sp);
    struct ggml_context * cs = t->ctx_in;
    t->in[PP_IN_TOKENS]  = ggml_new_tensor_1d(cs, GGML_TYPE_I32, T * B);
    t->in[PP_IN_TOKMASK] = ggml_new_tensor_3d(cs, GGML_TYPE_F32, 1, T, B);
    t->in[PP_IN_POS]     = ggml_new_tensor_1d(cs, GGML_TYPE_I32, T * B);
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
    // gemma's sliding-window mask: constant, an input in host memory like
    // the others (the scheduler copies it to the devices that read it)
    t->swa_mask = t->n_swa > 0 && t->n_swa < T ? ggml_new_tensor_2d(cs, GGML_TYPE_F32, T, T) : NULL;
    for (int i = 0; i < PP_IN_COUNT; i++) {
        if (t->in[i]) {
            ggml_set_input(t->in[i]);
        }
    }
    if (t->swa_mask) {
        ggml_set_name(t->swa_mask, "swa_mask");
        ggml_set_input(t->swa_mask);
    }
    t->buf_in = ggml_backend_alloc_ctx_tensors(cs, t->backend);
    if (!t->buf_in) {
        pp_errf(t, "cannot allocate the inputs");
        return false;
    }
    ggml_backend_buffer_clear(t->buf_in, 0);
    pp_fill_swa_mask(t);
    return true;
}

// pp_new_params creates the plug's parameters on their backend, zeroed.
static bool pp_new_params(pp_train * t) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t D = t->n_embd;
    struct ggml_init_params sp = { (PP_P_COUNT + 4) * ggml_tensor_overhead(), NULL, true };
    t->ctx_static = ggml_init(sp);
    struct ggml_context * cs = t->ctx_static;
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
    t->buf_static = ggml_backend_alloc_ctx_tensors(cs, t->backends[t->home_par]);
    if (!t->buf_static) {
        pp_errf(t, "cannot allocate the plug's parameters on %s", ggml_backend_name(t->backends[t->home_par]));
        return false;
    }
    ggml_backend_buffer_clear(t->buf_static, 0);
    t->par_mirrored = !ggml_backend_buffer_is_host(t->buf_static);
    for (int i = 0; i < PP_P_COUNT; i++) {
        if (t->par[i]) {
            t->par_host[i] = t->par_mirrored ? calloc((size_t) ggml_nelements(t->par[i]), sizeof(float)) : t->par[i]->data;
            if (!t->par_host[i]) {
                pp_errf(t, "out of memory");
                return false;
            }
        }
    }
    return true;
}

// pp_new_grads creates the gradient accumulators of the parameters and the
// loss (accs, indexed by gf's nodes) next to the parameters.
static bool pp_new_grads(pp_train * t, struct ggml_cgraph * gf, struct ggml_tensor ** accs) {
    const int n_nodes = ggml_graph_n_nodes(gf);
    struct ggml_init_params gp = { (size_t) (PP_P_COUNT + 2) * ggml_tensor_overhead(), NULL, true };
    t->ctx_grads = ggml_init(gp);
    for (int i = 0; i < n_nodes; i++) {
        struct ggml_tensor * node = ggml_graph_node(gf, i);
        if (node->flags & (GGML_TENSOR_FLAG_PARAM | GGML_TENSOR_FLAG_LOSS)) {
            accs[i] = ggml_new_tensor(t->ctx_grads, GGML_TYPE_F32, GGML_MAX_DIMS, node->ne);
            for (int p = 0; p < PP_P_COUNT; p++) {
                if (t->par[p] == node) {
                    t->gradacc[p] = accs[i];
                }
            }
        }
    }
    t->buf_grads = ggml_backend_alloc_ctx_tensors(t->ctx_grads, t->backends[t->home_par]);
    if (!t->buf_grads) {
        pp_errf(t, "cannot allocate the gradients");
        return false;
    }
    for (int p = 0; p < PP_P_COUNT; p++) {
        if (t->gradacc[p]) {
            t->grad_host[p] = t->par_mirrored ? calloc((size_t) ggml_nelements(t->gradacc[p]), sizeof(float)) : t->gradacc[p]->data;
            if (!t->grad_host[p]) {
                pp_errf(t, "out of memory");
                return false;
            }
        }
    }
    return true;
}

// pp_backend_of is the first backend that can run node in the memory of
// buf (the scheduler's rule for a pre-allocated tensor), or -1.
static int pp_backend_of(const pp_train * t, ggml_backend_buffer_t buf, struct ggml_tensor * node) {
    for (int b = 0; b <= t->n_dev; b++) {
        if (ggml_backend_supports_buft(t->backends[b], ggml_backend_buffer_get_type(buf)) &&
            ggml_backend_supports_op(t->backends[b], node)) {
            return b;
        }
    }
    return -1;
}

// pp_sched_alloc creates a scheduler over the backends and allocates g.
// ggml aborts on a node that writes into pre-allocated memory (a parameter,
// a gradient accumulator) of a backend that cannot run its op: such a graph
// is refused here first.
static bool pp_sched_alloc(pp_train * t, ggml_backend_sched_t * sched, struct ggml_cgraph * g, const char * what) {
    for (int i = 0; i < ggml_graph_n_nodes(g); i++) {
        struct ggml_tensor * node = ggml_graph_node(g, i);
        if (node->op == GGML_OP_MUL_MAT) {
            // F32 accumulation, also in the products of the backward pass
            // (a device may otherwise accumulate in F16: Vulkan's default)
            ggml_mul_mat_set_prec(node, GGML_PREC_F32);
        }
        ggml_backend_buffer_t buf = node->view_src ? node->view_src->buffer : node->buffer;
        if (buf && pp_backend_of(t, buf, node) < 0) {
            pp_errf(t, "%s cannot run %s on %s, which lives in its memory: train on the CPU (device none)",
                    ggml_backend_buffer_name(buf), ggml_op_desc(node), node->name);
            return false;
        }
    }
    *sched = ggml_backend_sched_new(t->backends, NULL, t->n_dev + 1, 2 * PP_GRAPH_SIZE, false, true);
    if (!*sched) {
        pp_errf(t, "cannot create the backend scheduler");
        return false;
    }
    if (!ggml_backend_sched_alloc_graph(*sched, g)) {
        pp_errf(t, "cannot allocate the %s (T=%d, B=%d): lower the batch size or lengths", what,
                (int) t->cfg.n_tokens, (int) t->cfg.n_batch);
        return false;
    }
    return true;
}

static bool pp_is_view(const struct ggml_tensor * node) {
    switch (node->op) {
        case GGML_OP_NONE: case GGML_OP_VIEW: case GGML_OP_RESHAPE: case GGML_OP_PERMUTE: case GGML_OP_TRANSPOSE:
            return true;
        default:
            return false;
    }
}

static bool pp_devices_support(const pp_train * t, const struct ggml_tensor * node) {
    for (int d = 0; d < t->n_dev; d++) {
        if (ggml_backend_supports_op(t->backends[d], node)) {
            return true;
        }
    }
    return false;
}

// pp_count_placement records, per op of the training graph, where the
// scheduler put its nodes and how many of them no device supports.
static void pp_count_placement(pp_train * t) {
    t->n_splits = ggml_backend_sched_get_n_splits(t->sched);
    for (int i = 0; i < ggml_graph_n_nodes(t->gb); i++) {
        struct ggml_tensor * node = ggml_graph_node(t->gb, i);
        if (pp_is_view(node)) {
            continue;
        }
        const char * desc = ggml_op_desc(node);
        int k = 0;
        while (k < t->n_place && strcmp(t->place[k].op, desc) != 0) {
            k++;
        }
        if (k == t->n_place) {
            if (k == PP_MAX_OPS) {
                continue;
            }
            snprintf(t->place[k].op, sizeof(t->place[k].op), "%s", desc);
            t->n_place++;
        }
        t->place[k].nodes++;
        if (ggml_backend_sched_get_tensor_backend(t->sched, node) == t->backend) {
            t->place[k].on_cpu++;
        }
        if (t->n_dev > 0 && !pp_devices_support(t, node)) {
            t->place[k].unsupported++;
        }
    }
}

static bool pp_build(pp_train * t) {
    if (!pp_new_inputs(t) || !pp_new_params(t)) {
        return false;
    }
    t->rows_host = calloc((size_t) (t->n_embd * pp_n_persona(&t->cfg) * t->cfg.n_batch), sizeof(float));
    if (!t->rows_host) {
        pp_errf(t, "out of memory");
        return false;
    }

    // forward graph
    struct ggml_init_params cp = { PP_GRAPH_SIZE * ggml_tensor_overhead() + 3 * ggml_graph_overhead_custom(PP_GRAPH_SIZE, true), NULL, true };
    t->ctx_compute = ggml_init(cp);
    struct ggml_context * ctx = t->ctx_compute;
    t->loss = pp_forward(t, ctx, &t->rows);
    struct ggml_cgraph * gf = ggml_new_graph_custom(ctx, PP_GRAPH_SIZE, true);
    ggml_build_forward_expand(gf, t->loss);

    // gradient accumulators for the parameters and the loss
    struct ggml_tensor ** accs = calloc((size_t) ggml_graph_n_nodes(gf), sizeof(*accs));
    if (!accs || !pp_new_grads(t, gf, accs)) {
        free(accs);
        if (!t->err[0]) {
            pp_errf(t, "out of memory");
        }
        return false;
    }
    t->gb = ggml_graph_dup(ctx, gf, true);
    ggml_build_backward_expand(ctx, t->gb, accs);
    free(accs);

    if (!pp_sched_alloc(t, &t->sched, t->gb, "training graph")) {
        return false;
    }
    pp_count_placement(t);
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

// pp_open_device starts the backend of the ggml device called name.
static bool pp_open_device(pp_train * t, const char * name) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(name);
    if (!dev) {
        pp_errf(t, "no device %s: list the devices with --list-devices (its backend library must be loaded)", name);
        return false;
    }
    if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) {
        pp_errf(t, "device %s is the CPU, which always takes part: leave it out of the device list", name);
        return false;
    }
    if (t->n_dev == PP_MAX_DEVICES) {
        pp_errf(t, "more than %d devices", PP_MAX_DEVICES);
        return false;
    }
    ggml_backend_t b = ggml_backend_dev_init(dev, NULL);
    if (!b) {
        pp_errf(t, "cannot start device %s (%s)", name, ggml_backend_dev_description(dev));
        return false;
    }
    t->backends[t->n_dev++] = b;
    return true;
}

// pp_open_backends starts the devices of cfg.devices, then the CPU.
static bool pp_open_backends(pp_train * t) {
    const char * list = t->cfg.devices ? t->cfg.devices : "";
    char name[128];
    while (*list) {
        size_t n = strcspn(list, ",");
        if (n >= sizeof(name)) {
            pp_errf(t, "device name %.*s... is too long", 32, list);
            return false;
        }
        memcpy(name, list, n);
        name[n] = 0;
        list += n + (list[n] == ',');
        if (n > 0 && !pp_open_device(t, name)) {
            return false;
        }
    }
    t->backend = ggml_backend_cpu_init();
    if (!t->backend) {
        pp_errf(t, "cannot start the CPU backend");
        return false;
    }
    ggml_backend_cpu_set_n_threads(t->backend, t->cfg.n_threads > 0 ? t->cfg.n_threads : 1);
    t->backends[t->n_dev] = t->backend;
    // the parameters sit with the first offloaded block (the CPU when none is)
    const int ngl = t->cfg.n_gpu_layers;
    t->home_par = pp_layer_home(t, ngl < 0 || ngl >= t->n_layer ? 0 : t->n_layer - ngl);
    return true;
}

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

    if (!pp_open_backends(t)) {
        goto done;
    }

    {
        pp_wref * refs = calloc((size_t) (PP_GLOBAL_REFS + PP_LAYER_REFS * t->n_layer), sizeof(*refs));
        int k = pp_weight_refs(t, refs);
        bool loaded = pp_load_weights(t, model_path, g, meta, refs, k);
        free(refs);
        if (!loaded || !pp_tie_output(t)) {
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
    if (t->sched_logits) ggml_backend_sched_free(t->sched_logits);
    if (t->ctx_logits) ggml_free(t->ctx_logits);
    if (t->sched_eval) ggml_backend_sched_free(t->sched_eval);
    if (t->ctx_eval) ggml_free(t->ctx_eval);
    if (t->sched) ggml_backend_sched_free(t->sched);
    if (t->ctx_compute) ggml_free(t->ctx_compute);
    for (int i = 0; i < PP_P_COUNT; i++) {
        if (t->par_mirrored) {
            free(t->par_host[i]);
            free(t->grad_host[i]);
        }
    }
    free(t->rows_host);
    if (t->buf_grads) ggml_backend_buffer_free(t->buf_grads);
    if (t->ctx_grads) ggml_free(t->ctx_grads);
    if (t->buf_static) ggml_backend_buffer_free(t->buf_static);
    if (t->ctx_static) ggml_free(t->ctx_static);
    if (t->buf_in) ggml_backend_buffer_free(t->buf_in);
    if (t->ctx_in) ggml_free(t->ctx_in);
    if (t->buf_out) ggml_backend_buffer_free(t->buf_out);
    if (t->ctx_out) ggml_free(t->ctx_out);
    for (int b = 0; b <= PP_MAX_DEVICES; b++) {
        if (t->buf_w[b]) ggml_backend_buffer_free(t->buf_w[b]);
        if (t->ctx_w[b]) ggml_free(t->ctx_w[b]);
    }
    for (int b = 0; b <= PP_MAX_DEVICES; b++) {
        if (t->backends[b]) ggml_backend_free(t->backends[b]);
    }
    free(t);
}

// ---- access ------------------------------------------------------------------

void * pp_train_input(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_IN_COUNT || !t->in[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->in[which]);
    return t->in[which]->data; // host memory
}

float * pp_train_param(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_P_COUNT || !t->par[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->par[which]);
    return t->par_host[which];
}

float * pp_train_grad(pp_train * t, int32_t which, int64_t * n) {
    if (which < 0 || which >= PP_P_COUNT || !t->gradacc[which]) {
        *n = 0;
        return NULL;
    }
    *n = ggml_nelements(t->gradacc[which]);
    return t->grad_host[which];
}

float * pp_train_rows(pp_train * t) { return t->rows_host; }

int32_t pp_train_placement(const pp_train * t, int32_t i, char * op, int32_t op_len,
                           int32_t * nodes, int32_t * on_cpu, int32_t * unsupported) {
    if (i < 0 || i >= t->n_place) {
        return -1;
    }
    snprintf(op, (size_t) op_len, "%s", t->place[i].op);
    *nodes = t->place[i].nodes;
    *on_cpu = t->place[i].on_cpu;
    *unsupported = t->place[i].unsupported;
    return 0;
}

int32_t pp_train_n_splits(const pp_train * t) { return t->n_splits; }

// ---- compute -----------------------------------------------------------------

// pp_upload_params copies the host copies of the parameters (the optimizer
// updates them there) to the device that holds them.
static void pp_upload_params(pp_train * t) {
    if (!t->par_mirrored) {
        return;
    }
    for (int i = 0; i < PP_P_COUNT; i++) {
        if (t->par[i]) {
            ggml_backend_tensor_set(t->par[i], t->par_host[i], 0, ggml_nbytes(t->par[i]));
        }
    }
}

static void pp_download_grads(pp_train * t) {
    if (!t->par_mirrored) {
        return;
    }
    for (int i = 0; i < PP_P_COUNT; i++) {
        if (t->gradacc[i]) {
            ggml_backend_tensor_get(t->gradacc[i], t->grad_host[i], 0, ggml_nbytes(t->gradacc[i]));
        }
    }
}

// pp_eval_graph builds and allocates, on first use, the forward-only graph.
static bool pp_eval_graph(pp_train * t) {
    if (t->gf) {
        return true;
    }
    struct ggml_init_params cp = { PP_GRAPH_SIZE * ggml_tensor_overhead() + ggml_graph_overhead_custom(PP_GRAPH_SIZE, false), NULL, true };
    t->ctx_eval = ggml_init(cp);
    if (!t->ctx_eval) {
        pp_errf(t, "ggml_init failed");
        return false;
    }
    t->loss_eval = pp_forward(t, t->ctx_eval, &t->rows_eval);
    struct ggml_cgraph * gf = ggml_new_graph_custom(t->ctx_eval, PP_GRAPH_SIZE, false);
    ggml_build_forward_expand(gf, t->loss_eval);
    if (!pp_sched_alloc(t, &t->sched_eval, gf, "forward graph")) {
        return false;
    }
    t->gf = gf;
    return true;
}

int32_t pp_train_compute(pp_train * t, bool backward, float * loss) {
    if (!backward && !pp_eval_graph(t)) {
        return -1;
    }
    pp_upload_params(t);
    enum ggml_status st;
    struct ggml_tensor * l = t->loss, * rows = t->rows;
    if (backward) {
        ggml_graph_reset(t->gb);
        st = ggml_backend_sched_graph_compute(t->sched, t->gb);
    } else {
        st = ggml_backend_sched_graph_compute(t->sched_eval, t->gf);
        l = t->loss_eval;
        rows = t->rows_eval;
    }
    if (st != GGML_STATUS_SUCCESS) {
        pp_errf(t, "graph compute failed (%d)", (int) st);
        return -1;
    }
    ggml_backend_tensor_get(l, loss, 0, sizeof(float));
    ggml_backend_tensor_get(rows, t->rows_host, 0, ggml_nbytes(rows));
    if (backward) {
        pp_download_grads(t);
    }
    return 0;
}

// pp_logits_graph builds and allocates, on first use, the graph of every
// position's logits.
static bool pp_logits_graph(pp_train * t) {
    if (t->g_logits) {
        return true;
    }
    const int64_t T = t->cfg.n_tokens, B = t->cfg.n_batch;
    struct ggml_init_params cp = { PP_GRAPH_SIZE * ggml_tensor_overhead() + ggml_graph_overhead_custom(PP_GRAPH_SIZE, false), NULL, true };
    t->ctx_logits = ggml_init(cp);
    if (!t->ctx_logits) {
        pp_errf(t, "ggml_init failed");
        return false;
    }
    struct ggml_tensor * rows = NULL;
    struct ggml_tensor * x = pp_build_input(t, t->ctx_logits, &rows);
    x = pp_build_decoder(t, t->ctx_logits, x);
    struct ggml_tensor * xf = ggml_reshape_2d(t->ctx_logits, x, t->n_embd, T * B);
    t->logits_all = pp_logits(t, t->ctx_logits, xf);
    ggml_set_output(t->logits_all);
    struct ggml_cgraph * g = ggml_new_graph_custom(t->ctx_logits, PP_GRAPH_SIZE, false);
    ggml_build_forward_expand(g, t->logits_all);
    if (!pp_sched_alloc(t, &t->sched_logits, g, "logits graph")) {
        return false;
    }
    t->g_logits = g;
    return true;
}

int32_t pp_train_logits(pp_train * t, float * out, int64_t n) {
    const pp_train_cfg * c = &t->cfg;
    const int64_t T = c->n_tokens, B = c->n_batch;
    if (n != (int64_t) t->n_vocab * T * B) {
        pp_errf(t, "logits buffer of %lld floats, need %lld", (long long) n, (long long) t->n_vocab * T * B);
        return -1;
    }
    if (!pp_logits_graph(t)) {
        return -1;
    }
    pp_upload_params(t);
    if (ggml_backend_sched_graph_compute(t->sched_logits, t->g_logits) != GGML_STATUS_SUCCESS) {
        pp_errf(t, "logits graph compute failed");
        return -1;
    }
    ggml_backend_tensor_get(t->logits_all, out, 0, (size_t) n * sizeof(float));
    return 0;
}

void pp_train_compute_task_run(void * arg) {
    pp_train_task * k = (pp_train_task *) arg;
    k->rc = pp_train_compute(k->t, k->backward, &k->loss);
}

void pp_train_logits_task_run(void * arg) {
    pp_train_task * k = (pp_train_task *) arg;
    k->rc = pp_train_logits(k->t, k->out, k->n);
}
