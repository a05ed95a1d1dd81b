/*
 * pplug_kernels_ref.c - a plain C implementation of pplug_kernels.h, for tests only.
 *
 * native_test.go compiles it (when a C compiler is present) into a temporary
 * libpplug_kernels_cuda.so / libpplug_kernels_metal.dylib and runs the whole
 * backend suite through the purego binding: argument passing (including the
 * stack arguments of the longer signatures), status codes, last-error text,
 * residents and projector caching, on a machine without a GPU.
 * It reports one device, "reference C (test)". Slow and simple on purpose.
 */
#include "pplug_kernels.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PPLUG_REF_BACKEND
#define PPLUG_REF_BACKEND "cuda"
#endif

struct pplug_ctx { char err[1024]; int live_projectors, live_residents; };
struct pplug_projector { pplug_ctx *owner; int32_t d_in, d_out; float scale; float *w1, *b1, *w2, *b2; };
struct pplug_resident { pplug_ctx *owner; int32_t n, d_key, d_val; float *keys, *values; };

static int32_t fail(pplug_ctx *c, int32_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

static void put(char *buf, size_t len, const char *s) {
    if (buf != NULL && len > 0) snprintf(buf, len, "%s", s);
}

static float *dup(const float *src, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (p != NULL && n > 0) memcpy(p, src, n * sizeof(float));
    return p;
}

static void normalize(float *x, int32_t d) {
    double ss = 0;
    for (int32_t j = 0; j < d; j++) ss += (double)x[j] * x[j];
    if (ss == 0) return;
    double inv = 1 / sqrt(ss);
    for (int32_t j = 0; j < d; j++) x[j] = (float)(x[j] * inv);
}

static int bad_dim(int32_t d) { return d <= 0 || d > (1 << 22); }

static int32_t check_offsets(pplug_ctx *c, const int32_t *off, int32_t n) {
    if (off == NULL) return fail(c, PPLUG_ERR_INVALID, "offsets is NULL");
    if (off[0] != 0) return fail(c, PPLUG_ERR_INVALID, "offsets[0] = %d", off[0]);
    for (int32_t i = 0; i < n; i++)
        if (off[i + 1] < off[i]) return fail(c, PPLUG_ERR_INVALID, "offsets decrease at %d", i);
    return PPLUG_OK;
}

#ifdef PPLUG_REF_ABI /* to test the version check */
uint32_t pplug_abi_version(void) { return PPLUG_REF_ABI; }
#else
uint32_t pplug_abi_version(void) { return PPLUG_KERNELS_ABI_VERSION; }
#endif
const char *pplug_backend_name(void) { return PPLUG_REF_BACKEND; }
const char *pplug_status_string(int32_t s) { return s == PPLUG_OK ? "ok" : s == PPLUG_ERR_INVALID ? "invalid argument" : "error"; }

int32_t pplug_device_count(int32_t *count, char *err, size_t err_len) {
    if (count == NULL) { put(err, err_len, "count is NULL"); return PPLUG_ERR_INVALID; }
    *count = 1;
    return PPLUG_OK;
}

int32_t pplug_ctx_create(int32_t device, pplug_ctx **out, char *err, size_t err_len) {
    if (out == NULL) { put(err, err_len, "out is NULL"); return PPLUG_ERR_INVALID; }
    *out = NULL;
    if (device != 0) { put(err, err_len, "reference device 0 only"); return PPLUG_ERR_NO_DEVICE; }
    *out = calloc(1, sizeof(pplug_ctx));
    if (*out == NULL) { put(err, err_len, "calloc failed"); return PPLUG_ERR_OUT_OF_MEMORY; }
    return PPLUG_OK;
}

void pplug_ctx_destroy(pplug_ctx *ctx) { free(ctx); } /* the tests free every object first */
const char *pplug_ctx_last_error(const pplug_ctx *ctx) { return ctx ? ctx->err : "NULL context"; }

int32_t pplug_ctx_device_name(pplug_ctx *ctx, char *buf, size_t len) {
    if (ctx == NULL) return PPLUG_ERR_INVALID;
    if (buf == NULL || len == 0) return fail(ctx, PPLUG_ERR_INVALID, "empty buffer");
    put(buf, len, "reference C (test)");
    return PPLUG_OK;
}

int32_t pplug_projector_create(pplug_ctx *c, int32_t d_in, int32_t d_out, const float *w1, const float *b1,
                               const float *w2, const float *b2, float scale, pplug_projector **out) {
    if (c == NULL) return PPLUG_ERR_INVALID;
    if (out == NULL || bad_dim(d_in) || bad_dim(d_out) || !w1 || !b1 || !w2 || !b2)
        return fail(c, PPLUG_ERR_INVALID, "projector_create: bad arguments (d_in %d, d_out %d)", d_in, d_out);
    pplug_projector *p = calloc(1, sizeof *p);
    p->owner = c;
    p->d_in = d_in;
    p->d_out = d_out;
    p->scale = scale;
    p->w1 = dup(w1, (size_t)d_out * d_in);
    p->b1 = dup(b1, (size_t)d_out);
    p->w2 = dup(w2, (size_t)d_out * d_out);
    p->b2 = dup(b2, (size_t)d_out);
    c->live_projectors++;
    *out = p;
    return PPLUG_OK;
}

int32_t pplug_projector_free(pplug_ctx *c, pplug_projector *p) {
    if (p == NULL) return PPLUG_OK;
    if (c == NULL || p->owner != c) return PPLUG_ERR_INVALID;
    free(p->w1); free(p->b1); free(p->w2); free(p->b2); free(p);
    c->live_projectors--;
    return PPLUG_OK;
}

int32_t pplug_project(pplug_ctx *c, const pplug_projector *p, const float *in, int64_t n, float *out) {
    if (c == NULL) return PPLUG_ERR_INVALID;
    if (p == NULL || p->owner != c) return fail(c, PPLUG_ERR_INVALID, "project: not a projector of this context");
    if (n < 0) return fail(c, PPLUG_ERR_INVALID, "project: n = %lld", (long long)n);
    double *h = malloc((size_t)p->d_out * sizeof(double));
    for (int64_t r = 0; r < n; r++) {
        const float *x = in + r * p->d_in;
        for (int32_t o = 0; o < p->d_out; o++) {
            double a = p->b1[o];
            for (int32_t i = 0; i < p->d_in; i++) a += (double)p->w1[(size_t)o * p->d_in + i] * x[i];
            h[o] = 0.5 * a * (1 + erf(a / sqrt(2.0)));
        }
        for (int32_t o = 0; o < p->d_out; o++) {
            double a = p->b2[o];
            for (int32_t i = 0; i < p->d_out; i++) a += (double)p->w2[(size_t)o * p->d_out + i] * h[i];
            out[r * p->d_out + o] = (float)(a * p->scale);
        }
    }
    free(h);
    return PPLUG_OK;
}

/* one user: normalised keys k [n][dk], values v [n][dv], query q (copied and normalised) */
static void aggregate_user(int32_t n, int32_t dk, int32_t dv, const float *k, const float *v, const float *query,
                           float tau, float *out, float *w) {
    float *q = dup(query, (size_t)dk);
    normalize(q, dk);
    double *s = malloc((size_t)(n ? n : 1) * sizeof(double)), m = -INFINITY, z = 0;
    for (int32_t i = 0; i < n; i++) {
        double a = 0;
        for (int32_t j = 0; j < dk; j++) a += (double)q[j] * k[(size_t)i * dk + j];
        s[i] = a / tau;
        if (s[i] > m) m = s[i];
    }
    for (int32_t i = 0; i < n; i++) z += (s[i] = exp(s[i] - m));
    for (int32_t j = 0; j < dv; j++) out[j] = 0;
    for (int32_t i = 0; i < n; i++) {
        s[i] /= z;
        if (w != NULL) w[i] = (float)s[i];
        for (int32_t j = 0; j < dv; j++) out[j] += (float)(s[i] * v[(size_t)i * dv + j]);
    }
    free(s);
    free(q);
}

int32_t pplug_aggregate(pplug_ctx *c, int32_t nu, const int32_t *off, const float *queries, const float *keys,
                        const float *values, int32_t dk, int32_t dv, float tau, float *out, float *weights) {
    if (c == NULL) return PPLUG_ERR_INVALID;
    if (nu < 0 || bad_dim(dk) || bad_dim(dv)) return fail(c, PPLUG_ERR_INVALID, "aggregate: bad sizes");
    if (!(tau > 0) || isinf(tau)) return fail(c, PPLUG_ERR_INVALID, "aggregate: tau = %g", (double)tau);
    int32_t st = check_offsets(c, off, nu);
    if (st != PPLUG_OK) return st;
    for (int32_t b = 0; b < nu; b++) {
        int32_t o = off[b], n = off[b + 1] - o;
        float *k = dup(keys + (size_t)o * dk, (size_t)n * dk);
        for (int32_t i = 0; i < n; i++) normalize(k + (size_t)i * dk, dk);
        aggregate_user(n, dk, dv, k, values + (size_t)o * dv, queries + (size_t)b * dk, tau, out + (size_t)b * dv,
                       weights ? weights + o : NULL);
        free(k);
    }
    return PPLUG_OK;
}

int32_t pplug_resident_upload(pplug_ctx *c, const float *keys, const float *values, int32_t n, int32_t dk,
                              int32_t dv, pplug_resident **out) {
    if (c == NULL) return PPLUG_ERR_INVALID;
    if (out == NULL || n < 0 || bad_dim(dk) || bad_dim(dv)) return fail(c, PPLUG_ERR_INVALID, "upload: bad sizes");
    pplug_resident *r = calloc(1, sizeof *r);
    r->owner = c;
    r->n = n;
    r->d_key = dk;
    r->d_val = dv;
    r->keys = dup(keys, (size_t)n * dk);
    r->values = dup(values, (size_t)n * dv);
    for (int32_t i = 0; i < n; i++) normalize(r->keys + (size_t)i * dk, dk);
    c->live_residents++;
    *out = r;
    return PPLUG_OK;
}

int32_t pplug_resident_free(pplug_ctx *c, pplug_resident *r) {
    if (r == NULL) return PPLUG_OK;
    if (c == NULL || r->owner != c) return PPLUG_ERR_INVALID;
    free(r->keys); free(r->values); free(r);
    c->live_residents--;
    return PPLUG_OK;
}

int32_t pplug_resident_aggregate(pplug_ctx *c, const pplug_resident *const *users, int32_t nu, const float *queries,
                                 float tau, float *out, float *weights) {
    if (c == NULL) return PPLUG_ERR_INVALID;
    if (nu < 0) return fail(c, PPLUG_ERR_INVALID, "resident_aggregate: n_users = %d", nu);
    if (!(tau > 0) || isinf(tau)) return fail(c, PPLUG_ERR_INVALID, "resident_aggregate: tau = %g", (double)tau);
    int64_t off = 0;
    for (int32_t b = 0; b < nu; b++) {
        const pplug_resident *r = users[b];
        if (r == NULL || r->owner != c) return fail(c, PPLUG_ERR_INVALID, "users[%d] is not a resident of this context", b);
        if (r->d_key != users[0]->d_key || r->d_val != users[0]->d_val) return fail(c, PPLUG_ERR_INVALID, "mixed dims");
        aggregate_user(r->n, r->d_key, r->d_val, r->keys, r->values, queries + (size_t)b * r->d_key, tau,
                       out + (size_t)b * r->d_val, weights ? weights + off : NULL);
        off += r->n;
    }
    return PPLUG_OK;
}
