// pplug_kernels_metal.m - Metal implementation of kernels/include/pplug_kernels.h.
//
// A thin Objective-C (ARC) shim: it compiles pplug_kernels.metal from the
// source embedded at build time (CMakeLists.txt generates
// pplug_kernels_metal_src.h), keeps one command queue per context and runs
// every call as one or more synchronous command buffers. Buffers use shared
// storage (unified memory), so host data is copied with memcpy.
//
// UNVERIFIED: this file has not been compiled or run on Apple hardware yet.

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pplug_kernels.h"
#include "pplug_kernels_metal_src.h" // static const char pplug_metal_source[]

enum { kThreads = 256, kGemmTile = 16, kSlots = 6 };
static const int32_t kMaxDim = 1 << 22;
static const size_t kProjectBudget = (size_t)512 << 20;

// Parameter blocks; must match the structs of pplug_kernels.metal.
typedef struct { int32_t d; } RowParams;
typedef struct { int32_t n, d_key; float tau; } ScoreParams;
typedef struct { int32_t n; } SoftmaxParams;
typedef struct { int32_t n, d_val; } WsumParams;
typedef struct { uint64_t total; int32_t cols; float scale; } EltParams;
typedef struct { int32_t rows, k, n_out; } GemmParams;

static NSString *const kKernelNames[] = {
    @"normalize_rows_kernel", @"scores_kernel", @"softmax_kernel",
    @"wsum_kernel", @"gemm_nt_kernel", @"bias_gelu_kernel", @"bias_scale_kernel",
};

@interface PPProjector : NSObject
@property(nonatomic) int32_t dIn, dOut;
@property(nonatomic) float scale;
@property(nonatomic, strong) id<MTLBuffer> w1, b1, w2, b2;
@end
@implementation PPProjector
@end

@interface PPResident : NSObject
@property(nonatomic) int32_t n, dKey, dVal;
@property(nonatomic, strong) id<MTLBuffer> keys, values; // nil when n == 0; keys L2-normalised
@end
@implementation PPResident
@end

@interface PPCtx : NSObject {
  @public
    char err[1024];
    char name[256];
}
@property(nonatomic, strong) id<MTLDevice> device;
@property(nonatomic, strong) id<MTLCommandQueue> queue;
@property(nonatomic, strong) NSMutableDictionary<NSString *, id<MTLComputePipelineState>> *pipes;
@property(nonatomic, strong) NSMutableArray *scratch; // kSlots entries: id<MTLBuffer> or NSNull
@property(nonatomic, strong) NSHashTable *projectors; // live objects, compared by pointer
@property(nonatomic, strong) NSHashTable *residents;
@end
@implementation PPCtx
@end

static inline PPCtx *C(const pplug_ctx *ctx) { return (__bridge PPCtx *)(void *)(uintptr_t)ctx; }

// ---- errors -------------------------------------------------------------------

static void write_err(char *buf, size_t len, const char *fmt, ...) {
    if (buf == NULL || len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int32_t fail(PPCtx *c, int32_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

#define CKS(expr)                                                                                                      \
    do {                                                                                                               \
        int32_t st_ = (expr);                                                                                          \
        if (st_ != PPLUG_OK) return st_;                                                                               \
    } while (0)

static int32_t check_offsets(PPCtx *c, const char *fn, const int32_t *off, int32_t n) {
    if (off[0] != 0) return fail(c, PPLUG_ERR_INVALID, "%s: offsets[0] = %d, want 0", fn, off[0]);
    for (int32_t i = 0; i < n; i++)
        if (off[i + 1] < off[i])
            return fail(c, PPLUG_ERR_INVALID, "%s: offsets decrease at %d (%d > %d)", fn, i, off[i], off[i + 1]);
    return PPLUG_OK;
}

static int32_t check_dim(PPCtx *c, const char *fn, const char *what, int32_t d) {
    if (d <= 0 || d > kMaxDim) return fail(c, PPLUG_ERR_INVALID, "%s: %s = %d out of range [1, %d]", fn, what, d, kMaxDim);
    return PPLUG_OK;
}

static int32_t check_tau(PPCtx *c, const char *fn, float tau) {
    if (!(tau > 0.0f) || isinf(tau)) return fail(c, PPLUG_ERR_INVALID, "%s: tau = %g, want finite > 0", fn, (double)tau);
    return PPLUG_OK;
}

// ---- helpers --------------------------------------------------------------------

// Grow-only shared scratch buffer of at least bytes bytes.
static id<MTLBuffer> scratch(PPCtx *c, int slot, size_t bytes) {
    if (bytes < 16) bytes = 16;
    id cur = c.scratch[slot];
    if (cur != [NSNull null] && ((id<MTLBuffer>)cur).length >= bytes) return cur;
    c.scratch[slot] = [NSNull null]; // release the old one first
    const size_t mib = (size_t)1 << 20;
    id<MTLBuffer> b = [c.device newBufferWithLength:(bytes + mib - 1) / mib * mib options:MTLResourceStorageModeShared];
    if (b == nil) {
        fail(c, PPLUG_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte Metal buffer", bytes);
        return nil;
    }
    c.scratch[slot] = b;
    return b;
}

static id<MTLBuffer> upload(PPCtx *c, const void *src, size_t bytes) {
    id<MTLBuffer> b = [c.device newBufferWithBytes:src length:(bytes < 16 ? 16 : bytes) options:MTLResourceStorageModeShared];
    if (b == nil) fail(c, PPLUG_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte Metal buffer", bytes);
    return b;
}

static int32_t finish(PPCtx *c, id<MTLCommandBuffer> cb, const char *what) {
    [cb commit];
    [cb waitUntilCompleted];
    if (cb.status != MTLCommandBufferStatusCompleted) {
        NSString *msg = cb.error ? cb.error.localizedDescription : @"command buffer did not complete";
        return fail(c, PPLUG_ERR_DEVICE, "%s: %s", what, msg.UTF8String);
    }
    return PPLUG_OK;
}

static void dispatch(PPCtx *c, id<MTLComputeCommandEncoder> enc, NSString *kernel, NSUInteger groups) {
    [enc setComputePipelineState:c.pipes[kernel]];
    [enc dispatchThreadgroups:MTLSizeMake(groups, 1, 1) threadsPerThreadgroup:MTLSizeMake(kThreads, 1, 1)];
}

// Encode the aggregation of one user: keys/values at the given buffers and
// offsets, its normalised query at q/qoff, weights at w/woff, output at o/ooff.
static void encode_user(PPCtx *c, id<MTLComputeCommandEncoder> enc, int32_t n, int32_t d_key, int32_t d_val, float tau,
                        id<MTLBuffer> keys, NSUInteger koff, id<MTLBuffer> values, NSUInteger voff, id<MTLBuffer> q,
                        NSUInteger qoff, id<MTLBuffer> w, NSUInteger woff, id<MTLBuffer> o, NSUInteger ooff) {
    if (n > 0) {
        const NSUInteger simd = c.pipes[@"scores_kernel"].threadExecutionWidth;
        const NSUInteger per_group = kThreads / (simd ? simd : 32);
        ScoreParams sp = {n, d_key, tau};
        [enc setBuffer:q offset:qoff atIndex:0];
        [enc setBuffer:keys offset:koff atIndex:1];
        [enc setBuffer:w offset:woff atIndex:2];
        [enc setBytes:&sp length:sizeof sp atIndex:3];
        dispatch(c, enc, @"scores_kernel", ((NSUInteger)n + per_group - 1) / per_group);
        SoftmaxParams mp = {n};
        [enc setBuffer:w offset:woff atIndex:0];
        [enc setBytes:&mp length:sizeof mp atIndex:1];
        dispatch(c, enc, @"softmax_kernel", 1);
    }
    WsumParams wp = {n, d_val};
    [enc setBuffer:w offset:woff atIndex:0];
    [enc setBuffer:(values ? values : w) offset:voff atIndex:1]; // n == 0 reads nothing
    [enc setBuffer:o offset:ooff atIndex:2];
    [enc setBytes:&wp length:sizeof wp atIndex:3];
    dispatch(c, enc, @"wsum_kernel", ((NSUInteger)d_val + kThreads - 1) / kThreads);
}

static void encode_normalize(PPCtx *c, id<MTLComputeCommandEncoder> enc, id<MTLBuffer> x, int32_t rows, int32_t d) {
    if (rows <= 0) return;
    RowParams rp = {d};
    [enc setBuffer:x offset:0 atIndex:0];
    [enc setBytes:&rp length:sizeof rp atIndex:1];
    dispatch(c, enc, @"normalize_rows_kernel", (NSUInteger)rows);
}

static NSArray<id<MTLDevice>> *all_devices(void) {
    NSArray<id<MTLDevice>> *devs = MTLCopyAllDevices();
    if (devs.count == 0) {
        id<MTLDevice> d = MTLCreateSystemDefaultDevice();
        if (d != nil) devs = @[ d ];
    }
    return devs;
}

// ---- ABI --------------------------------------------------------------------------

PPLUG_API uint32_t pplug_abi_version(void) { return PPLUG_KERNELS_ABI_VERSION; }

PPLUG_API const char *pplug_backend_name(void) { return "metal"; }

PPLUG_API const char *pplug_status_string(int32_t status) {
    switch (status) {
    case PPLUG_OK: return "ok";
    case PPLUG_ERR_INVALID: return "invalid argument";
    case PPLUG_ERR_NO_DEVICE: return "no device";
    case PPLUG_ERR_OUT_OF_MEMORY: return "out of memory";
    case PPLUG_ERR_DEVICE: return "device error";
    case PPLUG_ERR_BLAS: return "GEMM error";
    case PPLUG_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

PPLUG_API int32_t pplug_device_count(int32_t *count, char *err, size_t err_len) {
    @autoreleasepool {
        if (count == NULL) {
            write_err(err, err_len, "pplug_device_count: count is NULL");
            return PPLUG_ERR_INVALID;
        }
        *count = (int32_t)all_devices().count;
        if (*count == 0) write_err(err, err_len, "no Metal device");
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_ctx_create(int32_t device, pplug_ctx **out, char *err, size_t err_len) {
    @autoreleasepool {
        if (out == NULL) {
            write_err(err, err_len, "pplug_ctx_create: out is NULL");
            return PPLUG_ERR_INVALID;
        }
        *out = NULL;
        NSArray<id<MTLDevice>> *devs = all_devices();
        if (device < 0 || (NSUInteger)device >= devs.count) {
            write_err(err, err_len, "Metal device %d does not exist (%lu devices)", device, (unsigned long)devs.count);
            return PPLUG_ERR_NO_DEVICE;
        }
        PPCtx *c = [PPCtx new];
        c.device = devs[(NSUInteger)device];
        c.queue = [c.device newCommandQueue];
        if (c.queue == nil) {
            write_err(err, err_len, "Metal device %d: cannot create a command queue", device);
            return PPLUG_ERR_DEVICE;
        }
        MTLCompileOptions *opts = [MTLCompileOptions new];
        opts.fastMathEnabled = NO; // exact erf/exp/division, as the CPU oracle
        NSError *e = nil;
        id<MTLLibrary> lib = [c.device newLibraryWithSource:@(pplug_metal_source) options:opts error:&e];
        if (lib == nil) {
            write_err(err, err_len, "compiling pplug_kernels.metal: %s", e.localizedDescription.UTF8String);
            return PPLUG_ERR_DEVICE;
        }
        c.pipes = [NSMutableDictionary dictionary];
        for (size_t i = 0; i < sizeof kKernelNames / sizeof kKernelNames[0]; i++) {
            id<MTLFunction> f = [lib newFunctionWithName:kKernelNames[i]];
            id<MTLComputePipelineState> p = f ? [c.device newComputePipelineStateWithFunction:f error:&e] : nil;
            if (p == nil) {
                write_err(err, err_len, "pipeline %s: %s", kKernelNames[i].UTF8String,
                          e ? e.localizedDescription.UTF8String : "function not found");
                return PPLUG_ERR_DEVICE;
            }
            if (p.maxTotalThreadsPerThreadgroup < kThreads) {
                write_err(err, err_len, "pipeline %s allows %lu threads per threadgroup, need %d",
                          kKernelNames[i].UTF8String, (unsigned long)p.maxTotalThreadsPerThreadgroup, kThreads);
                return PPLUG_ERR_DEVICE;
            }
            c.pipes[kKernelNames[i]] = p;
        }
        c.scratch = [NSMutableArray arrayWithCapacity:kSlots];
        for (int i = 0; i < kSlots; i++) [c.scratch addObject:[NSNull null]];
        NSPointerFunctionsOptions po = NSPointerFunctionsStrongMemory | NSPointerFunctionsObjectPointerPersonality;
        c.projectors = [NSHashTable hashTableWithOptions:po];
        c.residents = [NSHashTable hashTableWithOptions:po];
        snprintf(c->name, sizeof c->name, "%s", c.device.name.UTF8String);
        *out = (pplug_ctx *)(__bridge_retained void *)c;
        return PPLUG_OK;
    }
}

PPLUG_API void pplug_ctx_destroy(pplug_ctx *ctx) {
    if (ctx == NULL) return;
    @autoreleasepool {
        PPCtx *c = (__bridge_transfer PPCtx *)(void *)ctx; // released at the end of the scope
        [c.projectors removeAllObjects];
        [c.residents removeAllObjects];
        [c.scratch removeAllObjects];
    }
}

PPLUG_API const char *pplug_ctx_last_error(const pplug_ctx *ctx) {
    if (ctx == NULL) return "NULL context";
    return C(ctx)->err;
}

PPLUG_API int32_t pplug_ctx_device_name(pplug_ctx *ctx, char *buf, size_t len) {
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    PPCtx *c = C(ctx);
    if (buf == NULL || len == 0) return fail(c, PPLUG_ERR_INVALID, "pplug_ctx_device_name: empty buffer");
    snprintf(buf, len, "%s", c->name);
    return PPLUG_OK;
}

PPLUG_API int32_t pplug_projector_create(pplug_ctx *ctx, int32_t d_in, int32_t d_out, const float *w1,
                                         const float *b1, const float *w2, const float *b2, float scale,
                                         pplug_projector **out) {
    static const char fn[] = "pplug_projector_create";
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        if (out == NULL) return fail(c, PPLUG_ERR_INVALID, "%s: out is NULL", fn);
        *out = NULL;
        CKS(check_dim(c, fn, "d_in", d_in));
        CKS(check_dim(c, fn, "d_out", d_out));
        if (w1 == NULL || b1 == NULL || w2 == NULL || b2 == NULL)
            return fail(c, PPLUG_ERR_INVALID, "%s: NULL weight array", fn);
        if (isnan(scale) || isinf(scale)) return fail(c, PPLUG_ERR_INVALID, "%s: scale = %g", fn, (double)scale);
        PPProjector *p = [PPProjector new];
        p.dIn = d_in;
        p.dOut = d_out;
        p.scale = scale;
        p.w1 = upload(c, w1, (size_t)d_out * (size_t)d_in * sizeof(float));
        p.b1 = upload(c, b1, (size_t)d_out * sizeof(float));
        p.w2 = upload(c, w2, (size_t)d_out * (size_t)d_out * sizeof(float));
        p.b2 = upload(c, b2, (size_t)d_out * sizeof(float));
        if (p.w1 == nil || p.b1 == nil || p.w2 == nil || p.b2 == nil) return PPLUG_ERR_OUT_OF_MEMORY;
        [c.projectors addObject:p];
        *out = (pplug_projector *)(__bridge void *)p; // owned by c.projectors
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_projector_free(pplug_ctx *ctx, pplug_projector *proj) {
    if (proj == NULL) return PPLUG_OK;
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        id p = (__bridge id)(void *)proj;
        if (![c.projectors containsObject:p])
            return fail(c, PPLUG_ERR_INVALID, "pplug_projector_free: not a live projector of this context");
        [c.projectors removeObject:p];
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_project(pplug_ctx *ctx, const pplug_projector *proj, const float *in, int64_t n, float *out) {
    static const char fn[] = "pplug_project";
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        id obj = proj ? (__bridge id)(void *)(uintptr_t)proj : nil;
        if (obj == nil || ![c.projectors containsObject:obj])
            return fail(c, PPLUG_ERR_INVALID, "%s: not a live projector of this context", fn);
        PPProjector *p = obj;
        if (n < 0) return fail(c, PPLUG_ERR_INVALID, "%s: n = %lld", fn, (long long)n);
        if (n == 0) return PPLUG_OK;
        if (in == NULL || out == NULL) return fail(c, PPLUG_ERR_INVALID, "%s: NULL in or out", fn);

        const int32_t d_in = p.dIn, d_out = p.dOut;
        const size_t row_bytes = ((size_t)d_in + 2 * (size_t)d_out) * sizeof(float);
        int64_t chunk = (int64_t)(kProjectBudget / row_bytes);
        if (chunk < 1) chunk = 1;
        if (chunk > n) chunk = n;
        id<MTLBuffer> bx = scratch(c, 0, (size_t)chunk * d_in * sizeof(float));
        id<MTLBuffer> by1 = scratch(c, 1, (size_t)chunk * d_out * sizeof(float));
        id<MTLBuffer> by2 = scratch(c, 2, (size_t)chunk * d_out * sizeof(float));
        if (bx == nil || by1 == nil || by2 == nil) return PPLUG_ERR_OUT_OF_MEMORY;

        for (int64_t r0 = 0; r0 < n; r0 += chunk) {
            const int32_t rows = (int32_t)(n - r0 < chunk ? n - r0 : chunk);
            const uint64_t total = (uint64_t)rows * (uint64_t)d_out;
            memcpy(bx.contents, in + r0 * d_in, (size_t)rows * d_in * sizeof(float));
            id<MTLCommandBuffer> cb = [c.queue commandBuffer];
            id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
            const MTLSize tile = MTLSizeMake(kGemmTile, kGemmTile, 1);
            const MTLSize grid = MTLSizeMake(((NSUInteger)d_out + kGemmTile - 1) / kGemmTile,
                                             ((NSUInteger)rows + kGemmTile - 1) / kGemmTile, 1);
            const NSUInteger elt_groups = (NSUInteger)((total + kThreads - 1) / kThreads);

            GemmParams g1 = {rows, d_in, d_out};
            [enc setComputePipelineState:c.pipes[@"gemm_nt_kernel"]];
            [enc setBuffer:bx offset:0 atIndex:0];
            [enc setBuffer:p.w1 offset:0 atIndex:1];
            [enc setBuffer:by1 offset:0 atIndex:2];
            [enc setBytes:&g1 length:sizeof g1 atIndex:3];
            [enc dispatchThreadgroups:grid threadsPerThreadgroup:tile];

            EltParams e1 = {total, d_out, 1.0f};
            [enc setBuffer:by1 offset:0 atIndex:0];
            [enc setBuffer:p.b1 offset:0 atIndex:1];
            [enc setBytes:&e1 length:sizeof e1 atIndex:2];
            dispatch(c, enc, @"bias_gelu_kernel", elt_groups);

            GemmParams g2 = {rows, d_out, d_out};
            [enc setComputePipelineState:c.pipes[@"gemm_nt_kernel"]];
            [enc setBuffer:by1 offset:0 atIndex:0];
            [enc setBuffer:p.w2 offset:0 atIndex:1];
            [enc setBuffer:by2 offset:0 atIndex:2];
            [enc setBytes:&g2 length:sizeof g2 atIndex:3];
            [enc dispatchThreadgroups:grid threadsPerThreadgroup:tile];

            EltParams e2 = {total, d_out, p.scale};
            [enc setBuffer:by2 offset:0 atIndex:0];
            [enc setBuffer:p.b2 offset:0 atIndex:1];
            [enc setBytes:&e2 length:sizeof e2 atIndex:2];
            dispatch(c, enc, @"bias_scale_kernel", elt_groups);

            [enc endEncoding];
            CKS(finish(c, cb, fn));
            memcpy(out + r0 * d_out, by2.contents, (size_t)total * sizeof(float));
        }
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_aggregate(pplug_ctx *ctx, int32_t n_users, const int32_t *offsets, const float *queries,
                                  const float *keys, const float *values, int32_t d_key, int32_t d_val, float tau,
                                  float *out, float *weights) {
    static const char fn[] = "pplug_aggregate";
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        if (n_users < 0) return fail(c, PPLUG_ERR_INVALID, "%s: n_users = %d", fn, n_users);
        CKS(check_dim(c, fn, "d_key", d_key));
        CKS(check_dim(c, fn, "d_val", d_val));
        CKS(check_tau(c, fn, tau));
        if (offsets == NULL) return fail(c, PPLUG_ERR_INVALID, "%s: offsets is NULL", fn);
        CKS(check_offsets(c, fn, offsets, n_users));
        if (n_users == 0) return PPLUG_OK;
        const int64_t total = offsets[n_users];
        if (queries == NULL || out == NULL || (total > 0 && (keys == NULL || values == NULL)))
            return fail(c, PPLUG_ERR_INVALID, "%s: NULL queries, keys, values or out", fn);

        const size_t kb = (size_t)total * d_key * sizeof(float), vb = (size_t)total * d_val * sizeof(float);
        const size_t qb = (size_t)n_users * d_key * sizeof(float), ob = (size_t)n_users * d_val * sizeof(float);
        id<MTLBuffer> bk = scratch(c, 0, kb), bv = scratch(c, 1, vb), bq = scratch(c, 2, qb);
        id<MTLBuffer> bw = scratch(c, 3, (size_t)total * sizeof(float)), bo = scratch(c, 4, ob);
        if (bk == nil || bv == nil || bq == nil || bw == nil || bo == nil) return PPLUG_ERR_OUT_OF_MEMORY;
        if (total > 0) {
            memcpy(bk.contents, keys, kb);
            memcpy(bv.contents, values, vb);
        }
        memcpy(bq.contents, queries, qb);
        id<MTLCommandBuffer> cb = [c.queue commandBuffer];
        id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
        encode_normalize(c, enc, bk, (int32_t)total, d_key);
        encode_normalize(c, enc, bq, n_users, d_key);
        for (int32_t b = 0; b < n_users; b++) {
            const int64_t o = offsets[b];
            encode_user(c, enc, offsets[b + 1] - offsets[b], d_key, d_val, tau, bk, (NSUInteger)(o * d_key * 4), bv,
                        (NSUInteger)(o * d_val * 4), bq, (NSUInteger)b * d_key * 4, bw, (NSUInteger)(o * 4), bo,
                        (NSUInteger)b * d_val * 4);
        }
        [enc endEncoding];
        CKS(finish(c, cb, fn));
        memcpy(out, bo.contents, ob);
        if (weights != NULL && total > 0) memcpy(weights, bw.contents, (size_t)total * sizeof(float));
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_resident_upload(pplug_ctx *ctx, const float *keys, const float *values, int32_t n,
                                        int32_t d_key, int32_t d_val, pplug_resident **out) {
    static const char fn[] = "pplug_resident_upload";
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        if (out == NULL) return fail(c, PPLUG_ERR_INVALID, "%s: out is NULL", fn);
        *out = NULL;
        if (n < 0) return fail(c, PPLUG_ERR_INVALID, "%s: n = %d", fn, n);
        CKS(check_dim(c, fn, "d_key", d_key));
        CKS(check_dim(c, fn, "d_val", d_val));
        if (n > 0 && (keys == NULL || values == NULL)) return fail(c, PPLUG_ERR_INVALID, "%s: NULL keys or values", fn);
        PPResident *r = [PPResident new];
        r.n = n;
        r.dKey = d_key;
        r.dVal = d_val;
        if (n > 0) {
            r.keys = upload(c, keys, (size_t)n * d_key * sizeof(float));
            r.values = upload(c, values, (size_t)n * d_val * sizeof(float));
            if (r.keys == nil || r.values == nil) return PPLUG_ERR_OUT_OF_MEMORY;
            id<MTLCommandBuffer> cb = [c.queue commandBuffer];
            id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
            encode_normalize(c, enc, r.keys, n, d_key);
            [enc endEncoding];
            CKS(finish(c, cb, fn));
        }
        [c.residents addObject:r];
        *out = (pplug_resident *)(__bridge void *)r; // owned by c.residents
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_resident_free(pplug_ctx *ctx, pplug_resident *res) {
    if (res == NULL) return PPLUG_OK;
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        id r = (__bridge id)(void *)res;
        if (![c.residents containsObject:r])
            return fail(c, PPLUG_ERR_INVALID, "pplug_resident_free: not a live resident of this context");
        [c.residents removeObject:r];
        return PPLUG_OK;
    }
}

PPLUG_API int32_t pplug_resident_aggregate(pplug_ctx *ctx, const pplug_resident *const *users, int32_t n_users,
                                           const float *queries, float tau, float *out, float *weights) {
    static const char fn[] = "pplug_resident_aggregate";
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    @autoreleasepool {
        PPCtx *c = C(ctx);
        if (n_users < 0) return fail(c, PPLUG_ERR_INVALID, "%s: n_users = %d", fn, n_users);
        CKS(check_tau(c, fn, tau));
        if (n_users == 0) return PPLUG_OK;
        if (users == NULL || queries == NULL || out == NULL)
            return fail(c, PPLUG_ERR_INVALID, "%s: NULL users, queries or out", fn);
        int32_t d_key = 0, d_val = 0;
        int64_t total = 0;
        for (int32_t b = 0; b < n_users; b++) {
            id obj = users[b] ? (__bridge id)(void *)(uintptr_t)users[b] : nil;
            if (obj == nil || ![c.residents containsObject:obj])
                return fail(c, PPLUG_ERR_INVALID, "%s: users[%d] is not a live resident of this context", fn, b);
            PPResident *r = obj;
            if (b == 0) {
                d_key = r.dKey;
                d_val = r.dVal;
            } else if (r.dKey != d_key || r.dVal != d_val) {
                return fail(c, PPLUG_ERR_INVALID, "%s: users[%d] has d_key=%d d_val=%d, users[0] has %d, %d", fn, b,
                            r.dKey, r.dVal, d_key, d_val);
            }
            total += r.n;
        }
        const size_t qb = (size_t)n_users * d_key * sizeof(float), ob = (size_t)n_users * d_val * sizeof(float);
        id<MTLBuffer> bq = scratch(c, 2, qb), bw = scratch(c, 3, (size_t)total * sizeof(float)), bo = scratch(c, 4, ob);
        if (bq == nil || bw == nil || bo == nil) return PPLUG_ERR_OUT_OF_MEMORY;
        memcpy(bq.contents, queries, qb);
        id<MTLCommandBuffer> cb = [c.queue commandBuffer];
        id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
        encode_normalize(c, enc, bq, n_users, d_key);
        int64_t off = 0;
        for (int32_t b = 0; b < n_users; b++) {
            PPResident *r = (__bridge PPResident *)(void *)(uintptr_t)users[b];
            encode_user(c, enc, r.n, d_key, d_val, tau, r.keys, 0, r.values, 0, bq, (NSUInteger)b * d_key * 4, bw,
                        (NSUInteger)(off * 4), bo, (NSUInteger)b * d_val * 4);
            off += r.n;
        }
        [enc endEncoding];
        CKS(finish(c, cb, fn));
        memcpy(out, bo.contents, ob);
        if (weights != NULL && total > 0) memcpy(weights, bw.contents, (size_t)total * sizeof(float));
        return PPLUG_OK;
    }
}
