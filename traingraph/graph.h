// The Persona-Plug training graph: the plug-in's forward (projector,
// input-aware aggregation, instruction rows) feeding a frozen decoder
// (llama, qwen2, qwen3, gemma2, gemma3, phi3) built from the GGUF weights
// with ggml's public API, a masked next-token cross-entropy, and ggml's
// automatic differentiation for the gradients of the plug-in's parameters.
// The optimizer runs in Go.
//
// Shapes are in ggml order (ne0 first). One training graph has a fixed
// shape: B examples of T positions, N history items, M target tokens each.
#ifndef PPLUG_TRAIN_H
#define PPLUG_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pp_train pp_train;

typedef struct pp_train_cfg {
    int32_t n_batch;    // B examples per graph
    int32_t n_tokens;   // T positions per example
    int32_t n_items;    // N history items per example (padded)
    int32_t n_targets;  // M target tokens per example (padded)
    int32_t d_enc;      // encoder width
    int32_t n_instr;    // instruction rows
    int32_t n_persona;  // persona rows R (0 reads as 1)
    int32_t n_threads;
    float   scale;      // projector output scale (plug.Scale)
    float   tau;        // aggregator temperature (fixed unless train_tau)
    bool    adapter;    // query adapter q' = norm(q + A q + a)
    bool    train_tau;  // learn log(tau)
    bool    eos_bias;   // learn a bias on the EOS logit: eos_bias_scale * theta
    float   eos_bias_scale;
    // Devices, the llama.cpp way: a comma-separated list of ggml device
    // names (e.g. "Vulkan0"), NULL or "" for the CPU only, and the number
    // of layers whose frozen weights go to them (the last n_gpu_layers
    // blocks, the output layer too when it exceeds the block count; < 0:
    // all). The graph runs on ggml's backend scheduler over the devices and
    // the CPU (last), so ops a device lacks run on the CPU. The plug's
    // parameters and gradients live on the device of the first offloaded
    // layer; the inputs in host memory.
    const char * devices;
    int32_t n_gpu_layers;
} pp_train_cfg;

// Inputs, filled by the caller before each compute (host memory, F32 unless noted).
enum pp_train_input {
    PP_IN_TOKENS = 0,  // I32 [T*B]  token ids (any valid id at row positions)
    PP_IN_TOKMASK,     // [1, T, B]  1 at token positions, 0 at row positions
    PP_IN_POS,         // I32 [T*B]  positions 0..T-1 of each example
    PP_IN_KQMASK,      // [T, T]     causal mask: 0 allowed, -INF masked (key, query)
    PP_IN_HIST,        // [d_enc, N, B] history embeddings (unit vectors)
    PP_IN_HMASK,       // [N, 1, B]  0 for items, -INF for padding
    PP_IN_QUERY,       // [d_enc, 1, B] query embeddings (unit vectors)
    PP_IN_SEL_I,       // [n_instr, T, B] 1 where instruction row j sits
    PP_IN_SEL_P,       // [R, T, B]  1 where persona row j sits
    PP_IN_TGT_POS,     // I32 [M*B]  flat index b*T + t of the position predicting each target
    PP_IN_LABELS,      // [n_vocab, M*B] one-hot targets, all-zero rows for padding
    PP_IN_LSCALE,      // [1]        (M*B) / number of real targets
    PP_IN_EOSVEC,      // [n_vocab]  one-hot of the EOS token (only with cfg.eos_bias)
    PP_IN_COUNT
};

// Trainable parameters (F32).
enum pp_train_param {
    PP_P_W1 = 0,   // [d_enc, d_llm]  (row-major [d_llm][d_enc])
    PP_P_B1,       // [d_llm]
    PP_P_W2,       // [d_llm, R*d_llm]
    PP_P_B2,       // [R*d_llm]
    PP_P_INSTR,    // [d_llm, n_instr]
    PP_P_ADAPT_W,  // [d_enc, d_enc]  (only with cfg.adapter)
    PP_P_ADAPT_B,  // [d_enc]
    PP_P_LOGTAU,   // [1]             (only with cfg.train_tau)
    PP_P_EOS_BIAS, // [1]             theta, the EOS logit bias / eos_bias_scale (only with cfg.eos_bias)
    PP_P_COUNT
};

// pp_train_new loads the frozen decoder from a GGUF file (an architecture
// of pp_train_archs; block-quantized weights stay quantized, F16/BF16
// become F32) and builds the graph. On failure it returns NULL with a
// message in err.
pp_train * pp_train_new(const char * model_path, const pp_train_cfg * cfg, char * err, int32_t err_len);
void       pp_train_free(pp_train * t);

// pp_train_archs writes the architectures the graph builds ("llama, ...")
// into buf, truncated to len bytes with the terminating zero.
void pp_train_archs(char * buf, int32_t len);

// pp_train_check reads only the model's metadata and returns 0 when the
// graph supports its architecture and hyper-parameters, else -1 with the
// reason in err.
int32_t pp_train_check(const char * model_path, char * err, int32_t err_len);

// Model facts.
int32_t pp_train_n_embd (const pp_train * t);
int32_t pp_train_n_vocab(const pp_train * t);

// Host pointers to an input, a parameter or its gradient; n receives the
// number of elements. NULL when the tensor does not exist in this config.
// A parameter or gradient on a device has a host copy: parameters are
// uploaded before each compute, gradients downloaded after a backward.
void * pp_train_input(pp_train * t, int32_t which, int64_t * n);
float * pp_train_param(pp_train * t, int32_t which, int64_t * n);
float * pp_train_grad (pp_train * t, int32_t which, int64_t * n);

// pp_train_compute runs the forward graph (backward = false) or forward and
// backward (gradients into pp_train_grad, reset first). Returns 0 and the
// loss, or -1 (see err).
int32_t pp_train_compute(pp_train * t, bool backward, float * loss);

// pp_train_task is pp_train_compute's (or pp_train_logits') arguments and
// result, for the compute thread (binding.RunTask).
typedef struct pp_train_task {
    pp_train * t;
    bool       backward;
    float      loss;
    float *    out;
    int64_t    n;
    int32_t    rc;
} pp_train_task;
void pp_train_compute_task_run(void * arg);
void pp_train_logits_task_run(void * arg);

// pp_train_rows returns the persona rows P_u [d_llm, R, B] of the last compute.
float * pp_train_rows(pp_train * t);

// pp_train_logits computes (with a separate forward graph, allocated on
// first use) the logits of every position [n_vocab, T, B] into out.
int32_t pp_train_logits(pp_train * t, float * out, int64_t n);

// pp_train_placement describes the training graph's op i (ops in order of
// first appearance, view ops left out): its name (ggml_op_desc), how many
// nodes it has, how many of them the scheduler put on the CPU and how many
// no device of cfg.devices supports. Returns -1 past the last op.
int32_t pp_train_placement(const pp_train * t, int32_t i, char * op, int32_t op_len,
                           int32_t * nodes, int32_t * on_cpu, int32_t * unsupported);

// pp_train_n_splits is the number of graph splits of the training graph
// (one per run of consecutive nodes on one backend).
int32_t pp_train_n_splits(const pp_train * t);

// pp_train_error is the last error message.
const char * pp_train_error(const pp_train * t);

#endif
