/*
 * pplug_kernels.h - C ABI of the Persona-Plug device kernels.
 *
 * One ABI, two implementations: kernels/cuda (libpplug_kernels_cuda.so) and
 * kernels/metal (libpplug_kernels_metal.dylib). The Go package
 * github.com/pplug/pplug/kernels loads either at run time (purego) and has a
 * pure Go implementation of the same operations that serves as the fallback
 * and the test oracle.
 *
 * Conventions
 *   - Plain C. Every function returns an int32_t status (PPLUG_OK = 0) unless
 *     it is a query that cannot fail.
 *   - All float arrays are float32, row-major, densely packed, in host memory,
 *     unless the text says "device". Every call that takes host arrays is
 *     synchronous: when it returns, outputs are written and inputs may be
 *     reused. No call keeps a host pointer.
 *   - No global state: everything lives in a pplug_ctx. A context must not be
 *     used by two threads at once (callers serialise); any thread may use it.
 *   - Every object that is created has exactly one matching free/destroy; the
 *     free functions accept NULL.
 *   - After a failed call, pplug_ctx_last_error(ctx) describes it. Errors
 *     that happen before a context exists are written to the caller's
 *     err buffer.
 *
 * ABI version history
 *   1  first version.
 *   2  pplug_pool_tokens removed: llama.cpp pools the encoder's token states
 *      inside its own graph, on the model's device.
 */
#ifndef PPLUG_KERNELS_H
#define PPLUG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define PPLUG_KERNELS_ABI_VERSION 2u

#if defined(_WIN32)
#  if defined(PPLUG_KERNELS_BUILD)
#    define PPLUG_API __declspec(dllexport)
#  else
#    define PPLUG_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define PPLUG_API __attribute__((visibility("default")))
#else
#  define PPLUG_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque objects. */
typedef struct pplug_ctx pplug_ctx;             /* device, stream/queue, scratch memory, last error */
typedef struct pplug_projector pplug_projector; /* projector weights on the device */
typedef struct pplug_resident pplug_resident;   /* one user's keys and values on the device */

/* Status codes. */
enum {
    PPLUG_OK                = 0,
    PPLUG_ERR_INVALID       = 1, /* bad argument: NULL pointer, size, offsets, tau, mode */
    PPLUG_ERR_NO_DEVICE     = 2, /* no usable device / driver, or device index out of range */
    PPLUG_ERR_OUT_OF_MEMORY = 3, /* device (or host) allocation failed */
    PPLUG_ERR_DEVICE        = 4, /* runtime, driver or kernel failure; the context may be unusable */
    PPLUG_ERR_BLAS          = 5, /* the GEMM library failed */
    PPLUG_ERR_INTERNAL      = 6  /* anything else */
};

/* ---- library and context ------------------------------------------------ */

/* PPLUG_KERNELS_ABI_VERSION the library was built with. Callers refuse a
 * library whose version differs from theirs. */
PPLUG_API uint32_t pplug_abi_version(void);

/* "cuda" or "metal" (static string). */
PPLUG_API const char *pplug_backend_name(void);

/* Short text for a status code (static string). */
PPLUG_API const char *pplug_status_string(int32_t status);

/* Number of usable devices. On failure (no driver, ...) *count = 0 and the
 * reason is written to err (NUL-terminated, truncated to err_len; err may be
 * NULL). */
PPLUG_API int32_t pplug_device_count(int32_t *count, char *err, size_t err_len);

/* Create a context on device `device` (0-based) with its own stream / command
 * queue. On failure *out = NULL and the reason is written to err. */
PPLUG_API int32_t pplug_ctx_create(int32_t device, pplug_ctx **out, char *err, size_t err_len);

/* Destroy a context and everything still allocated through it (projectors,
 * residents, scratch). NULL is accepted. */
PPLUG_API void pplug_ctx_destroy(pplug_ctx *ctx);

/* Message of the most recent failed call on ctx ("" if none). Valid until
 * the next call on ctx. Never NULL. */
PPLUG_API const char *pplug_ctx_last_error(const pplug_ctx *ctx);

/* Human-readable device name, e.g. "NVIDIA H100 80GB HBM3", NUL-terminated
 * and truncated to len. */
PPLUG_API int32_t pplug_ctx_device_name(pplug_ctx *ctx, char *buf, size_t len);

/* ---- projector ------------------------------------------------------------ *
 * Proj(x) = scale * (W2 * GELU(W1 * x + b1) + b2), GELU(x) = x/2 * (1 + erf(x/sqrt(2)))
 * w1 [d_out x d_in] row-major (PyTorch nn.Linear.weight layout), b1 [d_out],
 * w2 [d_out x d_out] row-major, b2 [d_out]. The weights are copied to the
 * device; the host arrays may be freed after the call.
 */
PPLUG_API int32_t pplug_projector_create(pplug_ctx *ctx, int32_t d_in, int32_t d_out,
                                         const float *w1, const float *b1,
                                         const float *w2, const float *b2,
                                         float scale, pplug_projector **out);
PPLUG_API int32_t pplug_projector_free(pplug_ctx *ctx, pplug_projector *proj);

/* in [n x d_in] -> out [n x d_out]; n = 0 is a no-op. */
PPLUG_API int32_t pplug_project(pplug_ctx *ctx, const pplug_projector *proj,
                                const float *in, int64_t n, float *out);

/* ---- input-aware aggregation ---------------------------------------------- *
 * For user b with items offsets[b] .. offsets[b+1]-1:
 *   s_i = cos(q_b, k_i) / tau   (cosine: both sides L2-normalised first; a
 *                                zero vector has similarity 0)
 *   w_i = softmax over the user's own items of s_i (max-subtracted)
 *   out_b = sum_i w_i * v_i
 * A user with no items gets a zero row. tau must be finite and > 0.
 *
 * offsets [n_users + 1] (offsets[0] = 0, non-decreasing), queries
 * [n_users x d_key], keys [total x d_key], values [total x d_val] with
 * total = offsets[n_users], out [n_users x d_val], weights [total] or NULL.
 */
PPLUG_API int32_t pplug_aggregate(pplug_ctx *ctx, int32_t n_users, const int32_t *offsets,
                                  const float *queries, const float *keys, const float *values,
                                  int32_t d_key, int32_t d_val, float tau,
                                  float *out, float *weights);

/* ---- device-resident users -------------------------------------------------- *
 * Upload one user's keys [n x d_key] and (projected) values [n x d_val] once;
 * keep them on the device between queries. n = 0 is allowed (the user then
 * aggregates to a zero row).
 */
PPLUG_API int32_t pplug_resident_upload(pplug_ctx *ctx, const float *keys, const float *values,
                                        int32_t n, int32_t d_key, int32_t d_val,
                                        pplug_resident **out);
PPLUG_API int32_t pplug_resident_free(pplug_ctx *ctx, pplug_resident *res);

/* Aggregate over a list of resident users (all with the same d_key and
 * d_val; the same resident may appear more than once): queries
 * [n_users x d_key] -> out [n_users x d_val]; weights, if not NULL, receives
 * the users' weights one after the other ([sum of the users' n]). Same
 * semantics as pplug_aggregate. */
PPLUG_API int32_t pplug_resident_aggregate(pplug_ctx *ctx, const pplug_resident *const *users,
                                           int32_t n_users, const float *queries, float tau,
                                           float *out, float *weights);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PPLUG_KERNELS_H */
