// pplug_kernels.metal - Metal kernels of kernels/include/pplug_kernels.h.
//
// One counterpart per CUDA kernel of kernels/cuda/pplug_kernels.cu:
//   normalize_rows_kernel, scores_kernel, softmax_kernel,
//   wsum_kernel, bias_gelu_kernel, bias_scale_kernel
// plus gemm_nt_kernel, which stands in for cuBLAS.
//
// Differences from CUDA: the aggregation kernels run one user per dispatch
// (each resident user is its own MTLBuffer), the softmax sums in float
// (Metal has no double), and erf is computed here (Metal has none).
//
// UNVERIFIED: this file has not been compiled or run on Apple hardware yet.
// The shim (pplug_kernels_metal.m) compiles it from source at context creation.

#include <metal_stdlib>
using namespace metal;

#define GEMM_TILE 16

struct RowParams { int d; };
struct ScoreParams { int n; int d_key; float tau; };
struct SoftmaxParams { int n; };
struct WsumParams { int n; int d_val; };
struct EltParams { ulong total; int cols; float scale; };
struct GemmParams { int rows; int k; int n_out; };

// ---- threadgroup reductions (all threads must call; sh has 32 slots) --------

static float tg_sum(float v, threadgroup float *sh, uint lane, uint sg, uint nsg) {
    v = simd_sum(v);
    threadgroup_barrier(mem_flags::mem_threadgroup); // sh may still be read by a previous reduction
    if (lane == 0) sh[sg] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float r = 0.0f;
    for (uint i = 0; i < nsg; i++) r += sh[i];
    return r;
}

static float tg_max(float v, threadgroup float *sh, uint lane, uint sg, uint nsg) {
    v = simd_max(v);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (lane == 0) sh[sg] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float r = -INFINITY;
    for (uint i = 0; i < nsg; i++) r = fmax(r, sh[i]);
    return r;
}

// L2-normalise row[0..d) with the whole threadgroup, scaled by the largest
// magnitude first (no overflow for finite input); a zero row stays zero.
static void tg_normalize(device float *row, int d, threadgroup float *sh, uint tid, uint ntg, uint lane, uint sg,
                         uint nsg) {
    float m = 0.0f;
    for (int j = int(tid); j < d; j += int(ntg)) m = fmax(m, fabs(row[j]));
    m = tg_max(m, sh, lane, sg, nsg);
    if (!(m > 0.0f)) return;
    float ss = 0.0f;
    for (int j = int(tid); j < d; j += int(ntg)) {
        const float t = row[j] / m;
        ss += t * t;
    }
    ss = tg_sum(ss, sh, lane, sg, nsg);
    const float r = sqrt(ss);
    for (int j = int(tid); j < d; j += int(ntg)) row[j] = (row[j] / m) / r;
}

// erf with |error| < 1.2e-7 (Chebyshev fit of erfc, Numerical Recipes "erfcc").
static float pplug_erf(float x) {
    const float z = fabs(x);
    const float t = 1.0f / (1.0f + 0.5f * z);
    const float p = -z * z - 1.26551223f +
        t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f +
        t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    const float erfc_z = t * exp(p);
    return x >= 0.0f ? 1.0f - erfc_z : erfc_z - 1.0f;
}

// ---- kernels -------------------------------------------------------------------

// one threadgroup per row
kernel void normalize_rows_kernel(device float *x [[buffer(0)]],
                                  constant RowParams &p [[buffer(1)]],
                                  uint rowi [[threadgroup_position_in_grid]],
                                  uint tid [[thread_position_in_threadgroup]],
                                  uint ntg [[threads_per_threadgroup]],
                                  uint lane [[thread_index_in_simdgroup]],
                                  uint sg [[simdgroup_index_in_threadgroup]],
                                  uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float sh[32];
    tg_normalize(x + ulong(rowi) * ulong(p.d), p.d, sh, tid, ntg, lane, sg, nsg);
}

// one user per dispatch, one simdgroup per item; q is the user's normalised query
kernel void scores_kernel(device const float *q [[buffer(0)]],
                          device const float *keys [[buffer(1)]],
                          device float *w [[buffer(2)]],
                          constant ScoreParams &p [[buffer(3)]],
                          uint tg [[threadgroup_position_in_grid]],
                          uint lane [[thread_index_in_simdgroup]],
                          uint sg [[simdgroup_index_in_threadgroup]],
                          uint nsg [[simdgroups_per_threadgroup]],
                          uint width [[threads_per_simdgroup]]) {
    const int i = int(tg * nsg + sg);
    if (i >= p.n) return; // uniform per simdgroup
    device const float *k = keys + ulong(i) * ulong(p.d_key);
    float acc = 0.0f;
    for (int j = int(lane); j < p.d_key; j += int(width)) acc += q[j] * k[j];
    acc = simd_sum(acc);
    if (lane == 0) w[i] = acc / p.tau;
}

// one user per dispatch, one threadgroup: scores -> weights in place
kernel void softmax_kernel(device float *s [[buffer(0)]],
                           constant SoftmaxParams &p [[buffer(1)]],
                           uint tid [[thread_position_in_threadgroup]],
                           uint ntg [[threads_per_threadgroup]],
                           uint lane [[thread_index_in_simdgroup]],
                           uint sg [[simdgroup_index_in_threadgroup]],
                           uint nsg [[simdgroups_per_threadgroup]]) {
    threadgroup float sh[32];
    float m = -INFINITY;
    for (int i = int(tid); i < p.n; i += int(ntg)) m = fmax(m, s[i]);
    m = tg_max(m, sh, lane, sg, nsg);
    float sum = 0.0f;
    for (int i = int(tid); i < p.n; i += int(ntg)) {
        const float e = exp(s[i] - m);
        s[i] = e;
        sum += e;
    }
    sum = tg_sum(sum, sh, lane, sg, nsg);
    for (int i = int(tid); i < p.n; i += int(ntg)) s[i] = s[i] / sum;
}

// one user per dispatch, one thread per output column (threadgroups of 256)
kernel void wsum_kernel(device const float *w [[buffer(0)]],
                        device const float *values [[buffer(1)]],
                        device float *out [[buffer(2)]],
                        constant WsumParams &p [[buffer(3)]],
                        uint tg [[threadgroup_position_in_grid]],
                        uint tid [[thread_position_in_threadgroup]]) {
    threadgroup float ws[256];
    const int j = int(tg * 256 + tid);
    float acc = 0.0f;
    for (int base = 0; base < p.n; base += 256) {
        const int cnt = min(256, p.n - base);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (int(tid) < cnt) ws[tid] = w[base + int(tid)];
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (j < p.d_val) {
            device const float *v = values + ulong(base) * ulong(p.d_val) + ulong(j);
            for (int t = 0; t < cnt; t++) acc += ws[t] * v[ulong(t) * ulong(p.d_val)];
        }
    }
    if (j < p.d_val) out[j] = acc;
}

// y[rows][n_out] = x[rows][k] * w[n_out][k]^T, 16x16 tiles (stands in for cuBLAS)
kernel void gemm_nt_kernel(device const float *x [[buffer(0)]],
                           device const float *w [[buffer(1)]],
                           device float *y [[buffer(2)]],
                           constant GemmParams &p [[buffer(3)]],
                           uint2 tg [[threadgroup_position_in_grid]],
                           uint2 tid [[thread_position_in_threadgroup]]) {
    threadgroup float xs[GEMM_TILE][GEMM_TILE + 1];
    threadgroup float ws[GEMM_TILE][GEMM_TILE + 1];
    const int row = int(tg.y * GEMM_TILE + tid.y);
    const int col = int(tg.x * GEMM_TILE + tid.x);
    const int wrow = int(tg.x * GEMM_TILE + tid.y); // the w row (output column) this thread loads
    float acc = 0.0f;
    for (int k0 = 0; k0 < p.k; k0 += GEMM_TILE) {
        const int kk = k0 + int(tid.x);
        xs[tid.y][tid.x] = (row < p.rows && kk < p.k) ? x[ulong(row) * ulong(p.k) + ulong(kk)] : 0.0f;
        ws[tid.y][tid.x] = (wrow < p.n_out && kk < p.k) ? w[ulong(wrow) * ulong(p.k) + ulong(kk)] : 0.0f;
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int t = 0; t < GEMM_TILE; t++) acc += xs[tid.y][t] * ws[tid.x][t];
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (row < p.rows && col < p.n_out) y[ulong(row) * ulong(p.n_out) + ulong(col)] = acc;
}

kernel void bias_gelu_kernel(device float *y [[buffer(0)]],
                             device const float *b [[buffer(1)]],
                             constant EltParams &p [[buffer(2)]],
                             uint tg [[threadgroup_position_in_grid]],
                             uint tid [[thread_position_in_threadgroup]],
                             uint ntg [[threads_per_threadgroup]]) {
    const ulong i = ulong(tg) * ulong(ntg) + ulong(tid);
    if (i >= p.total) return;
    const float x = y[i] + b[i % ulong(p.cols)];
    y[i] = 0.5f * x * (1.0f + pplug_erf(x * 0.70710678118654752440f));
}

kernel void bias_scale_kernel(device float *y [[buffer(0)]],
                              device const float *b [[buffer(1)]],
                              constant EltParams &p [[buffer(2)]],
                              uint tg [[threadgroup_position_in_grid]],
                              uint tid [[thread_position_in_threadgroup]],
                              uint ntg [[threads_per_threadgroup]]) {
    const ulong i = ulong(tg) * ulong(ntg) + ulong(tid);
    if (i >= p.total) return;
    y[i] = (y[i] + b[i % ulong(p.cols)]) * p.scale;
}
