// pplug_kernels.cu - CUDA implementation of kernels/include/pplug_kernels.h.
//
// Kernels (kernels/metal/pplug_kernels.metal has one counterpart per kernel):
//   normalize_rows_kernel  in-place L2 normalisation, one block per row
//   scores_kernel          cosine / tau, one warp per (user, item)
//   softmax_kernel         per-user max-subtracted softmax, one block per user
//   wsum_kernel            out_b = sum_i w_i v_i, one thread per (user, column)
//   bias_gelu_kernel       y = GELU(y + b1)          (after cuBLAS GEMM 1)
//   bias_scale_kernel      y = scale * (y + b2)      (after cuBLAS GEMM 2)
//
// Build: see CMakeLists.txt (PPLUG_CUDA) or, by hand (one line):
//   nvcc -O3 -std=c++17 -arch=sm_90 -shared -Xcompiler -fPIC,-fvisibility=hidden
//        -Ikernels/include -DPPLUG_KERNELS_BUILD kernels/cuda/pplug_kernels.cu
//        -lcublas -o libpplug_kernels_cuda.so

#include "pplug_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

namespace {

constexpr int kThreads = 256;          // block size of every kernel
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxGridY = 65535;
constexpr int32_t kMaxDim = 1 << 22;   // bound on d, d_key, d_val, d_in, d_out (grid.y <= 65535)
constexpr uint32_t kMagicProjector = 0x50524f4au; // "PROJ"
constexpr uint32_t kMagicResident = 0x52455349u;  // "RESI"
constexpr size_t kProjectBudget = size_t(512) << 20; // device bytes per projector chunk

// One user of an aggregation: where its (normalised) keys and values are and
// where its weights go in the weight buffer.
struct UserDesc {
    const float *keys;
    const float *values;
    long long w_off;
    int n;
    int pad_;
};

enum Slot { kSlotA, kSlotB, kSlotC, kSlotD, kSlotE, kSlotF, kSlots };

struct Scratch {
    void *ptr;
    size_t size;
};

} // namespace

struct pplug_projector {
    uint32_t magic;
    pplug_ctx *owner;
    pplug_projector *prev, *next;
    int32_t d_in, d_out;
    float scale;
    float *w1, *b1, *w2, *b2; // device
};

struct pplug_resident {
    uint32_t magic;
    pplug_ctx *owner;
    pplug_resident *prev, *next;
    int32_t n, d_key, d_val;
    float *keys;   // device, rows L2-normalised at upload
    float *values; // device
};

struct pplug_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    char name[256];
    char err[1024];
    Scratch scratch[kSlots];
    UserDesc *host_desc; // grow-only host staging for descriptors
    size_t host_desc_cap;
    pplug_projector *projectors; // every live projector, for destroy
    pplug_resident *residents;   // every live resident, for destroy
};

// ---------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------

static void write_err(char *buf, size_t len, const char *fmt, ...) {
    if (buf == nullptr || len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int32_t fail(pplug_ctx *ctx, int32_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return code;
}

static int32_t cuda_code(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return PPLUG_ERR_OUT_OF_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice: return PPLUG_ERR_NO_DEVICE;
    default: return PPLUG_ERR_DEVICE;
    }
}

static int32_t cuda_fail(pplug_ctx *ctx, cudaError_t e, const char *what) {
    return fail(ctx, cuda_code(e), "%s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

static int32_t blas_fail(pplug_ctx *ctx, cublasStatus_t s, const char *what) {
    int32_t code = s == CUBLAS_STATUS_ALLOC_FAILED ? PPLUG_ERR_OUT_OF_MEMORY : PPLUG_ERR_BLAS;
    return fail(ctx, code, "%s: %s", what, cublasGetStatusString(s));
}

#define CK(ctx, expr)                                                   \
    do {                                                                \
        cudaError_t e_ = (expr);                                        \
        if (e_ != cudaSuccess) return cuda_fail((ctx), e_, #expr);      \
    } while (0)

#define CKB(ctx, expr)                                                  \
    do {                                                                \
        cublasStatus_t s_ = (expr);                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS) return blas_fail((ctx), s_, #expr); \
    } while (0)

#define CKS(expr)                                                       \
    do {                                                                \
        int32_t st_ = (expr);                                           \
        if (st_ != PPLUG_OK) return st_;                                \
    } while (0)

// ---------------------------------------------------------------------------
// device helpers
// ---------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions; every thread of the block must call them. sh has 32 slots.
__device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // sh may still be read by a previous reduction
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

__device__ double block_sum_d(double v, double *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = warp_sum_d(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : -INFINITY;
        v = warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

// L2-normalise row[0..d) in place with the whole block. Scaled by the largest
// magnitude first, so no finite input overflows or underflows; a zero row
// stays zero. Each thread touches only its own columns.
__device__ void block_normalize(float *row, int d, float *sh) {
    float m = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) m = fmaxf(m, fabsf(row[j]));
    m = block_max(m, sh);
    if (!(m > 0.0f)) return; // all zeros
    float ss = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float t = row[j] / m;
        ss += t * t;
    }
    ss = block_sum(ss, sh);
    const float r = sqrtf(ss); // in [1, sqrt(d)]
    for (int j = threadIdx.x; j < d; j += blockDim.x) row[j] = (row[j] / m) / r;
}

// ---------------------------------------------------------------------------
// kernels
// ---------------------------------------------------------------------------

__global__ void normalize_rows_kernel(float *x, int d) {
    __shared__ float sh[32];
    block_normalize(x + (long long)blockIdx.x * d, d, sh);
}

// grid (users, item blocks); one warp per item. qn: normalised queries.
__global__ void scores_kernel(const UserDesc *__restrict__ users, const float *__restrict__ qn,
                              int d_key, float tau, int item_base, float *__restrict__ w) {
    const UserDesc u = users[blockIdx.x];
    const int lane = threadIdx.x & 31;
    const int i = item_base + blockIdx.y * kWarpsPerBlock + (threadIdx.x >> 5);
    if (i >= u.n) return; // uniform per warp
    const float *q = qn + (long long)blockIdx.x * d_key;
    const float *k = u.keys + (long long)i * d_key;
    float acc = 0.0f;
    for (int j = lane; j < d_key; j += 32) acc += q[j] * k[j];
    acc = warp_sum(acc);
    if (lane == 0) w[u.w_off + i] = acc / tau;
}

// grid (users); scores -> weights in place, normalised in double.
__global__ void softmax_kernel(const UserDesc *__restrict__ users, float *w) {
    __shared__ float sh[32];
    __shared__ double shd[32];
    const UserDesc u = users[blockIdx.x];
    if (u.n == 0) return; // uniform per block
    float *s = w + u.w_off;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < u.n; i += blockDim.x) m = fmaxf(m, s[i]);
    m = block_max(m, sh);
    double sum = 0.0;
    for (int i = threadIdx.x; i < u.n; i += blockDim.x) {
        const float e = expf(s[i] - m);
        s[i] = e;
        sum += e;
    }
    sum = block_sum_d(sum, shd);
    for (int i = threadIdx.x; i < u.n; i += blockDim.x) s[i] = float(double(s[i]) / sum);
}

// grid (users, ceil(d_val / kThreads)); one thread per output column.
__global__ void wsum_kernel(const UserDesc *__restrict__ users, const float *__restrict__ w,
                            int d_val, float *__restrict__ out) {
    __shared__ float ws[kThreads];
    const UserDesc u = users[blockIdx.x];
    const int j = blockIdx.y * kThreads + threadIdx.x;
    const float *wu = w + u.w_off;
    float acc = 0.0f;
    for (int base = 0; base < u.n; base += kThreads) {
        const int cnt = min(kThreads, u.n - base);
        __syncthreads();
        if (threadIdx.x < cnt) ws[threadIdx.x] = wu[base + threadIdx.x];
        __syncthreads();
        if (j < d_val) {
            const float *v = u.values + (long long)base * d_val + j;
#pragma unroll 4
            for (int t = 0; t < cnt; t++) acc += ws[t] * v[(long long)t * d_val];
        }
    }
    if (j < d_val) out[(long long)blockIdx.x * d_val + j] = acc;
}

__global__ void bias_gelu_kernel(float *y, const float *__restrict__ b, long long total, int cols) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const float x = y[i] + b[i % cols];
        y[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    }
}

__global__ void bias_scale_kernel(float *y, const float *__restrict__ b, float scale, long long total,
                                  int cols) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = (y[i] + b[i % cols]) * scale;
    }
}

// ---------------------------------------------------------------------------
// host helpers
// ---------------------------------------------------------------------------

static unsigned elementwise_blocks(long long total) {
    long long b = (total + kThreads - 1) / kThreads;
    if (b > (1 << 20)) b = 1 << 20;
    if (b < 1) b = 1;
    return unsigned(b);
}

static int32_t enter(pplug_ctx *ctx) {
    CK(ctx, cudaSetDevice(ctx->device)); // the calling OS thread may differ between calls
    return PPLUG_OK;
}

// Grow-only scratch buffer `slot` of at least `bytes` bytes.
static int32_t scratch(pplug_ctx *ctx, int slot, size_t bytes, void **out) {
    Scratch &s = ctx->scratch[slot];
    if (bytes == 0) bytes = 1;
    if (s.size < bytes) {
        if (s.ptr != nullptr) {
            CK(ctx, cudaStreamSynchronize(ctx->stream));
            CK(ctx, cudaFree(s.ptr));
            s.ptr = nullptr;
            s.size = 0;
        }
        const size_t mib = size_t(1) << 20;
        const size_t want = (bytes + mib - 1) / mib * mib;
        CK(ctx, cudaMalloc(&s.ptr, want));
        s.size = want;
    }
    *out = s.ptr;
    return PPLUG_OK;
}

static int32_t host_descs(pplug_ctx *ctx, size_t n, UserDesc **out) {
    if (ctx->host_desc_cap < n) {
        UserDesc *p = static_cast<UserDesc *>(realloc(ctx->host_desc, n * sizeof(UserDesc)));
        if (p == nullptr) return fail(ctx, PPLUG_ERR_OUT_OF_MEMORY, "host allocation of %zu descriptors failed", n);
        ctx->host_desc = p;
        ctx->host_desc_cap = n;
    }
    *out = ctx->host_desc;
    return PPLUG_OK;
}

static int32_t check_offsets(pplug_ctx *ctx, const char *fn, const int32_t *offsets, int32_t n) {
    if (offsets[0] != 0) return fail(ctx, PPLUG_ERR_INVALID, "%s: offsets[0] = %d, want 0", fn, offsets[0]);
    for (int32_t i = 0; i < n; i++) {
        if (offsets[i + 1] < offsets[i])
            return fail(ctx, PPLUG_ERR_INVALID, "%s: offsets decrease at %d (%d > %d)", fn, i, offsets[i],
                        offsets[i + 1]);
    }
    return PPLUG_OK;
}

static int32_t check_dim(pplug_ctx *ctx, const char *fn, const char *what, int32_t d) {
    if (d <= 0 || d > kMaxDim) return fail(ctx, PPLUG_ERR_INVALID, "%s: %s = %d out of range [1, %d]", fn, what, d, kMaxDim);
    return PPLUG_OK;
}

static int32_t check_tau(pplug_ctx *ctx, const char *fn, float tau) {
    if (!(tau > 0.0f) || isinf(tau)) return fail(ctx, PPLUG_ERR_INVALID, "%s: tau = %g, want finite > 0", fn, double(tau));
    return PPLUG_OK;
}

// The aggregation pipeline on descriptors already on the device: normalise
// the queries (device, in place), scores, softmax, weighted sum.
static int32_t run_aggregate(pplug_ctx *ctx, const UserDesc *d_users, int32_t n_users, int max_n,
                             float *d_queries, int32_t d_key, int32_t d_val, float tau, float *d_w,
                             float *d_out) {
    normalize_rows_kernel<<<n_users, kThreads, 0, ctx->stream>>>(d_queries, d_key);
    CK(ctx, cudaGetLastError());
    if (max_n > 0) {
        const int item_blocks = (max_n + kWarpsPerBlock - 1) / kWarpsPerBlock;
        for (int yb = 0; yb < item_blocks; yb += kMaxGridY) {
            const int ny = item_blocks - yb < kMaxGridY ? item_blocks - yb : kMaxGridY;
            scores_kernel<<<dim3(n_users, ny), kThreads, 0, ctx->stream>>>(d_users, d_queries, d_key, tau,
                                                                           yb * kWarpsPerBlock, d_w);
            CK(ctx, cudaGetLastError());
        }
        softmax_kernel<<<n_users, kThreads, 0, ctx->stream>>>(d_users, d_w);
        CK(ctx, cudaGetLastError());
    }
    const int col_blocks = (d_val + kThreads - 1) / kThreads;
    wsum_kernel<<<dim3(n_users, col_blocks), kThreads, 0, ctx->stream>>>(d_users, d_w, d_val, d_out);
    CK(ctx, cudaGetLastError());
    return PPLUG_OK;
}

static void free_projector(pplug_projector *p) {
    cudaFree(p->w1);
    cudaFree(p->b1);
    cudaFree(p->w2);
    cudaFree(p->b2);
    p->magic = 0;
    delete p;
}

static void free_resident(pplug_resident *r) {
    cudaFree(r->keys);
    cudaFree(r->values);
    r->magic = 0;
    delete r;
}

// ---------------------------------------------------------------------------
// ABI
// ---------------------------------------------------------------------------

extern "C" {

PPLUG_API uint32_t pplug_abi_version(void) { return PPLUG_KERNELS_ABI_VERSION; }

PPLUG_API const char *pplug_backend_name(void) { return "cuda"; }

PPLUG_API const char *pplug_status_string(int32_t status) {
    switch (status) {
    case PPLUG_OK: return "ok";
    case PPLUG_ERR_INVALID: return "invalid argument";
    case PPLUG_ERR_NO_DEVICE: return "no device";
    case PPLUG_ERR_OUT_OF_MEMORY: return "out of memory";
    case PPLUG_ERR_DEVICE: return "device error";
    case PPLUG_ERR_BLAS: return "cuBLAS error";
    case PPLUG_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

PPLUG_API int32_t pplug_device_count(int32_t *count, char *err, size_t err_len) {
    if (count == nullptr) {
        write_err(err, err_len, "pplug_device_count: count is NULL");
        return PPLUG_ERR_INVALID;
    }
    *count = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        write_err(err, err_len, "cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
        return cuda_code(e);
    }
    *count = n;
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_ctx_create(int32_t device, pplug_ctx **out, char *err, size_t err_len) {
    if (out == nullptr) {
        write_err(err, err_len, "pplug_ctx_create: out is NULL");
        return PPLUG_ERR_INVALID;
    }
    *out = nullptr;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        write_err(err, err_len, "cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
        return cuda_code(e);
    }
    if (device < 0 || device >= n) {
        write_err(err, err_len, "CUDA device %d does not exist (%d device%s)", device, n, n == 1 ? "" : "s");
        return PPLUG_ERR_NO_DEVICE;
    }
    pplug_ctx *ctx = new (std::nothrow) pplug_ctx();
    if (ctx == nullptr) {
        write_err(err, err_len, "pplug_ctx_create: host allocation failed");
        return PPLUG_ERR_OUT_OF_MEMORY;
    }
    ctx->device = device;
    int32_t st = PPLUG_OK;
    cudaDeviceProp prop;
    cublasStatus_t bs;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        write_err(err, err_len, "CUDA device %d: %s (%s)", device, cudaGetErrorName(e), cudaGetErrorString(e));
        st = cuda_code(e);
    } else if ((bs = cublasCreate(&ctx->blas)) != CUBLAS_STATUS_SUCCESS ||
               (bs = cublasSetStream(ctx->blas, ctx->stream)) != CUBLAS_STATUS_SUCCESS ||
               (bs = cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS) {
        write_err(err, err_len, "cuBLAS on device %d: %s", device, cublasGetStatusString(bs));
        st = bs == CUBLAS_STATUS_ALLOC_FAILED ? PPLUG_ERR_OUT_OF_MEMORY : PPLUG_ERR_BLAS;
    }
    if (st != PPLUG_OK) {
        pplug_ctx_destroy(ctx);
        return st;
    }
    snprintf(ctx->name, sizeof ctx->name, "%s", prop.name);
    *out = ctx;
    return PPLUG_OK;
}

PPLUG_API void pplug_ctx_destroy(pplug_ctx *ctx) {
    if (ctx == nullptr) return;
    cudaSetDevice(ctx->device);
    if (ctx->stream != nullptr) cudaStreamSynchronize(ctx->stream);
    while (ctx->projectors != nullptr) {
        pplug_projector *p = ctx->projectors;
        ctx->projectors = p->next;
        free_projector(p);
    }
    while (ctx->residents != nullptr) {
        pplug_resident *r = ctx->residents;
        ctx->residents = r->next;
        free_resident(r);
    }
    for (int i = 0; i < kSlots; i++) cudaFree(ctx->scratch[i].ptr);
    free(ctx->host_desc);
    if (ctx->blas != nullptr) cublasDestroy(ctx->blas);
    if (ctx->stream != nullptr) cudaStreamDestroy(ctx->stream);
    delete ctx;
}

PPLUG_API const char *pplug_ctx_last_error(const pplug_ctx *ctx) {
    if (ctx == nullptr) return "NULL context";
    return ctx->err;
}

PPLUG_API int32_t pplug_ctx_device_name(pplug_ctx *ctx, char *buf, size_t len) {
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (buf == nullptr || len == 0) return fail(ctx, PPLUG_ERR_INVALID, "pplug_ctx_device_name: empty buffer");
    snprintf(buf, len, "%s", ctx->name);
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_projector_create(pplug_ctx *ctx, int32_t d_in, int32_t d_out, const float *w1,
                                         const float *b1, const float *w2, const float *b2, float scale,
                                         pplug_projector **out) {
    static const char fn[] = "pplug_projector_create";
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (out == nullptr) return fail(ctx, PPLUG_ERR_INVALID, "%s: out is NULL", fn);
    *out = nullptr;
    CKS(check_dim(ctx, fn, "d_in", d_in));
    CKS(check_dim(ctx, fn, "d_out", d_out));
    if (w1 == nullptr || b1 == nullptr || w2 == nullptr || b2 == nullptr)
        return fail(ctx, PPLUG_ERR_INVALID, "%s: NULL weight array", fn);
    if (isnan(scale) || isinf(scale)) return fail(ctx, PPLUG_ERR_INVALID, "%s: scale = %g", fn, double(scale));
    CKS(enter(ctx));

    pplug_projector *p = new (std::nothrow) pplug_projector();
    if (p == nullptr) return fail(ctx, PPLUG_ERR_OUT_OF_MEMORY, "%s: host allocation failed", fn);
    p->magic = kMagicProjector;
    p->owner = ctx;
    p->d_in = d_in;
    p->d_out = d_out;
    p->scale = scale;
    const size_t s1 = size_t(d_out) * size_t(d_in) * sizeof(float);
    const size_t s2 = size_t(d_out) * size_t(d_out) * sizeof(float);
    const size_t sb = size_t(d_out) * sizeof(float);
    cudaError_t e;
    const char *what = "cudaMalloc";
    if ((e = cudaMalloc(&p->w1, s1)) == cudaSuccess && (e = cudaMalloc(&p->b1, sb)) == cudaSuccess &&
        (e = cudaMalloc(&p->w2, s2)) == cudaSuccess && (e = cudaMalloc(&p->b2, sb)) == cudaSuccess) {
        what = "cudaMemcpy";
        if ((e = cudaMemcpyAsync(p->w1, w1, s1, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess &&
            (e = cudaMemcpyAsync(p->b1, b1, sb, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess &&
            (e = cudaMemcpyAsync(p->w2, w2, s2, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess &&
            (e = cudaMemcpyAsync(p->b2, b2, sb, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess) {
            e = cudaStreamSynchronize(ctx->stream);
        }
    }
    if (e != cudaSuccess) {
        free_projector(p);
        return cuda_fail(ctx, e, what);
    }
    p->next = ctx->projectors;
    if (p->next != nullptr) p->next->prev = p;
    ctx->projectors = p;
    *out = p;
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_projector_free(pplug_ctx *ctx, pplug_projector *p) {
    if (p == nullptr) return PPLUG_OK;
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (p->magic != kMagicProjector || p->owner != ctx)
        return fail(ctx, PPLUG_ERR_INVALID, "pplug_projector_free: not a live projector of this context");
    CKS(enter(ctx));
    CK(ctx, cudaStreamSynchronize(ctx->stream));
    if (p->prev != nullptr) p->prev->next = p->next;
    else ctx->projectors = p->next;
    if (p->next != nullptr) p->next->prev = p->prev;
    free_projector(p);
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_project(pplug_ctx *ctx, const pplug_projector *p, const float *in, int64_t n, float *out) {
    static const char fn[] = "pplug_project";
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (p == nullptr || p->magic != kMagicProjector || p->owner != ctx)
        return fail(ctx, PPLUG_ERR_INVALID, "%s: not a live projector of this context", fn);
    if (n < 0) return fail(ctx, PPLUG_ERR_INVALID, "%s: n = %lld", fn, (long long)n);
    if (n == 0) return PPLUG_OK;
    if (in == nullptr || out == nullptr) return fail(ctx, PPLUG_ERR_INVALID, "%s: NULL in or out", fn);
    CKS(enter(ctx));

    const int d_in = p->d_in, d_out = p->d_out;
    const size_t row_bytes = (size_t(d_in) + 2 * size_t(d_out)) * sizeof(float);
    long long chunk = (long long)(kProjectBudget / row_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > n) chunk = n;
    if (chunk > (1 << 30)) chunk = 1 << 30;

    void *vx, *vy1, *vy2;
    CKS(scratch(ctx, kSlotA, size_t(chunk) * d_in * sizeof(float), &vx));
    CKS(scratch(ctx, kSlotB, size_t(chunk) * d_out * sizeof(float), &vy1));
    CKS(scratch(ctx, kSlotC, size_t(chunk) * d_out * sizeof(float), &vy2));
    float *x = static_cast<float *>(vx), *y1 = static_cast<float *>(vy1), *y2 = static_cast<float *>(vy2);
    const float one = 1.0f, zero = 0.0f;

    for (long long r0 = 0; r0 < n; r0 += chunk) {
        const int rows = int(n - r0 < chunk ? n - r0 : chunk);
        const long long total = (long long)rows * d_out;
        CK(ctx, cudaMemcpyAsync(x, in + r0 * d_in, size_t(rows) * d_in * sizeof(float), cudaMemcpyHostToDevice,
                                ctx->stream));
        // Row-major Y[rows][d_out] = X[rows][d_in] * W^T is column-major Y^T = W * X^T:
        // W row-major [d_out][d_in] is column-major (d_in x d_out), hence OP_T.
        CKB(ctx, cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, d_out, rows, d_in, &one, p->w1, d_in, x, d_in,
                             &zero, y1, d_out));
        bias_gelu_kernel<<<elementwise_blocks(total), kThreads, 0, ctx->stream>>>(y1, p->b1, total, d_out);
        CK(ctx, cudaGetLastError());
        CKB(ctx, cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, d_out, rows, d_out, &one, p->w2, d_out, y1, d_out,
                             &zero, y2, d_out));
        bias_scale_kernel<<<elementwise_blocks(total), kThreads, 0, ctx->stream>>>(y2, p->b2, p->scale, total, d_out);
        CK(ctx, cudaGetLastError());
        CK(ctx, cudaMemcpyAsync(out + r0 * d_out, y2, size_t(total) * sizeof(float), cudaMemcpyDeviceToHost,
                                ctx->stream));
    }
    CK(ctx, cudaStreamSynchronize(ctx->stream));
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_aggregate(pplug_ctx *ctx, int32_t n_users, const int32_t *offsets, const float *queries,
                                  const float *keys, const float *values, int32_t d_key, int32_t d_val, float tau,
                                  float *out, float *weights) {
    static const char fn[] = "pplug_aggregate";
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (n_users < 0) return fail(ctx, PPLUG_ERR_INVALID, "%s: n_users = %d", fn, n_users);
    CKS(check_dim(ctx, fn, "d_key", d_key));
    CKS(check_dim(ctx, fn, "d_val", d_val));
    CKS(check_tau(ctx, fn, tau));
    if (offsets == nullptr) return fail(ctx, PPLUG_ERR_INVALID, "%s: offsets is NULL", fn);
    CKS(check_offsets(ctx, fn, offsets, n_users));
    if (n_users == 0) return PPLUG_OK;
    const long long total = offsets[n_users];
    if (queries == nullptr || out == nullptr || (total > 0 && (keys == nullptr || values == nullptr)))
        return fail(ctx, PPLUG_ERR_INVALID, "%s: NULL queries, keys, values or out", fn);
    CKS(enter(ctx));

    void *vk, *vv, *vq, *vw, *vo, *vd;
    CKS(scratch(ctx, kSlotA, size_t(total) * d_key * sizeof(float), &vk));
    CKS(scratch(ctx, kSlotB, size_t(total) * d_val * sizeof(float), &vv));
    CKS(scratch(ctx, kSlotC, size_t(n_users) * d_key * sizeof(float), &vq));
    CKS(scratch(ctx, kSlotD, size_t(total) * sizeof(float), &vw));
    CKS(scratch(ctx, kSlotE, size_t(n_users) * d_val * sizeof(float), &vo));
    CKS(scratch(ctx, kSlotF, size_t(n_users) * sizeof(UserDesc), &vd));
    float *dk = static_cast<float *>(vk), *dv = static_cast<float *>(vv);

    UserDesc *hd = nullptr;
    CKS(host_descs(ctx, size_t(n_users), &hd));
    int max_n = 0;
    for (int32_t b = 0; b < n_users; b++) {
        const int32_t o = offsets[b], n = offsets[b + 1] - offsets[b];
        hd[b].keys = dk + (long long)o * d_key;
        hd[b].values = dv + (long long)o * d_val;
        hd[b].w_off = o;
        hd[b].n = n;
        hd[b].pad_ = 0;
        if (n > max_n) max_n = n;
    }
    if (total > 0) {
        CK(ctx, cudaMemcpyAsync(dk, keys, size_t(total) * d_key * sizeof(float), cudaMemcpyHostToDevice, ctx->stream));
        CK(ctx, cudaMemcpyAsync(dv, values, size_t(total) * d_val * sizeof(float), cudaMemcpyHostToDevice,
                                ctx->stream));
        normalize_rows_kernel<<<unsigned(total), kThreads, 0, ctx->stream>>>(dk, d_key);
        CK(ctx, cudaGetLastError());
    }
    CK(ctx, cudaMemcpyAsync(vq, queries, size_t(n_users) * d_key * sizeof(float), cudaMemcpyHostToDevice,
                            ctx->stream));
    CK(ctx, cudaMemcpyAsync(vd, hd, size_t(n_users) * sizeof(UserDesc), cudaMemcpyHostToDevice, ctx->stream));
    CKS(run_aggregate(ctx, static_cast<const UserDesc *>(vd), n_users, max_n, static_cast<float *>(vq), d_key, d_val,
                      tau, static_cast<float *>(vw), static_cast<float *>(vo)));
    CK(ctx, cudaMemcpyAsync(out, vo, size_t(n_users) * d_val * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream));
    if (weights != nullptr && total > 0)
        CK(ctx, cudaMemcpyAsync(weights, vw, size_t(total) * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream));
    CK(ctx, cudaStreamSynchronize(ctx->stream));
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_resident_upload(pplug_ctx *ctx, const float *keys, const float *values, int32_t n,
                                        int32_t d_key, int32_t d_val, pplug_resident **out) {
    static const char fn[] = "pplug_resident_upload";
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (out == nullptr) return fail(ctx, PPLUG_ERR_INVALID, "%s: out is NULL", fn);
    *out = nullptr;
    if (n < 0) return fail(ctx, PPLUG_ERR_INVALID, "%s: n = %d", fn, n);
    CKS(check_dim(ctx, fn, "d_key", d_key));
    CKS(check_dim(ctx, fn, "d_val", d_val));
    if (n > 0 && (keys == nullptr || values == nullptr)) return fail(ctx, PPLUG_ERR_INVALID, "%s: NULL keys or values", fn);
    CKS(enter(ctx));

    pplug_resident *r = new (std::nothrow) pplug_resident();
    if (r == nullptr) return fail(ctx, PPLUG_ERR_OUT_OF_MEMORY, "%s: host allocation failed", fn);
    r->magic = kMagicResident;
    r->owner = ctx;
    r->n = n;
    r->d_key = d_key;
    r->d_val = d_val;
    if (n > 0) {
        const size_t kb = size_t(n) * d_key * sizeof(float), vb = size_t(n) * d_val * sizeof(float);
        cudaError_t e;
        const char *what = "cudaMalloc";
        if ((e = cudaMalloc(&r->keys, kb)) == cudaSuccess && (e = cudaMalloc(&r->values, vb)) == cudaSuccess) {
            what = "upload";
            if ((e = cudaMemcpyAsync(r->keys, keys, kb, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess &&
                (e = cudaMemcpyAsync(r->values, values, vb, cudaMemcpyHostToDevice, ctx->stream)) == cudaSuccess) {
                normalize_rows_kernel<<<n, kThreads, 0, ctx->stream>>>(r->keys, d_key);
                if ((e = cudaGetLastError()) == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
            }
        }
        if (e != cudaSuccess) {
            free_resident(r);
            return cuda_fail(ctx, e, what);
        }
    }
    r->next = ctx->residents;
    if (r->next != nullptr) r->next->prev = r;
    ctx->residents = r;
    *out = r;
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_resident_free(pplug_ctx *ctx, pplug_resident *r) {
    if (r == nullptr) return PPLUG_OK;
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (r->magic != kMagicResident || r->owner != ctx)
        return fail(ctx, PPLUG_ERR_INVALID, "pplug_resident_free: not a live resident of this context");
    CKS(enter(ctx));
    CK(ctx, cudaStreamSynchronize(ctx->stream));
    if (r->prev != nullptr) r->prev->next = r->next;
    else ctx->residents = r->next;
    if (r->next != nullptr) r->next->prev = r->prev;
    free_resident(r);
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_resident_aggregate(pplug_ctx *ctx, const pplug_resident *const *users, int32_t n_users,
                                           const float *queries, float tau, float *out, float *weights) {
    static const char fn[] = "pplug_resident_aggregate";
    if (ctx == nullptr) return PPLUG_ERR_INVALID;
    if (n_users < 0) return fail(ctx, PPLUG_ERR_INVALID, "%s: n_users = %d", fn, n_users);
    CKS(check_tau(ctx, fn, tau));
    if (n_users == 0) return PPLUG_OK;
    if (users == nullptr || queries == nullptr || out == nullptr)
        return fail(ctx, PPLUG_ERR_INVALID, "%s: NULL users, queries or out", fn);
    int32_t d_key = 0, d_val = 0;
    long long total = 0;
    int max_n = 0;
    for (int32_t b = 0; b < n_users; b++) {
        const pplug_resident *r = users[b];
        if (r == nullptr || r->magic != kMagicResident || r->owner != ctx)
            return fail(ctx, PPLUG_ERR_INVALID, "%s: users[%d] is not a live resident of this context", fn, b);
        if (b == 0) {
            d_key = r->d_key;
            d_val = r->d_val;
        } else if (r->d_key != d_key || r->d_val != d_val) {
            return fail(ctx, PPLUG_ERR_INVALID, "%s: users[%d] has d_key=%d d_val=%d, users[0] has %d, %d", fn, b,
                        r->d_key, r->d_val, d_key, d_val);
        }
        total += r->n;
        if (r->n > max_n) max_n = r->n;
    }
    CKS(enter(ctx));

    UserDesc *hd = nullptr;
    CKS(host_descs(ctx, size_t(n_users), &hd));
    long long off = 0;
    for (int32_t b = 0; b < n_users; b++) {
        hd[b].keys = users[b]->keys;
        hd[b].values = users[b]->values;
        hd[b].w_off = off;
        hd[b].n = users[b]->n;
        hd[b].pad_ = 0;
        off += users[b]->n;
    }
    void *vq, *vw, *vo, *vd;
    CKS(scratch(ctx, kSlotC, size_t(n_users) * d_key * sizeof(float), &vq));
    CKS(scratch(ctx, kSlotD, size_t(total) * sizeof(float), &vw));
    CKS(scratch(ctx, kSlotE, size_t(n_users) * d_val * sizeof(float), &vo));
    CKS(scratch(ctx, kSlotF, size_t(n_users) * sizeof(UserDesc), &vd));
    CK(ctx, cudaMemcpyAsync(vq, queries, size_t(n_users) * d_key * sizeof(float), cudaMemcpyHostToDevice,
                            ctx->stream));
    CK(ctx, cudaMemcpyAsync(vd, hd, size_t(n_users) * sizeof(UserDesc), cudaMemcpyHostToDevice, ctx->stream));
    CKS(run_aggregate(ctx, static_cast<const UserDesc *>(vd), n_users, max_n, static_cast<float *>(vq), d_key, d_val,
                      tau, static_cast<float *>(vw), static_cast<float *>(vo)));
    CK(ctx, cudaMemcpyAsync(out, vo, size_t(n_users) * d_val * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream));
    if (weights != nullptr && total > 0)
        CK(ctx, cudaMemcpyAsync(weights, vw, size_t(total) * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream));
    CK(ctx, cudaStreamSynchronize(ctx->stream));
    return PPLUG_OK;
}

} // extern "C"
