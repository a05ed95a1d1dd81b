// The plug-in's inference graphs on one ggml backend device; see plugin.h.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "plugin.h"

// PROJECT_CHUNK_FLOATS bounds the activations of one projector graph: the
// input rows and two hidden layers of a chunk of rows.
#define PROJECT_CHUNK_FLOATS ((int64_t) 1 << 24)

struct pp_plugin {
    ggml_backend_t backend;
    ggml_gallocr_t galloc; // the graphs' activations, reused call after call
    char err[512];
};

struct pp_plugin_proj {
    struct ggml_context * ctx;
    ggml_backend_buffer_t buf;
    struct ggml_tensor *w1, *b1, *w2, *b2; // [d_in, d_out], [d_out], [d_out, d_out], [d_out]
    int d_in, d_out;
    float scale;
};

struct pp_plugin_res {
    struct ggml_context * ctx;
    ggml_backend_buffer_t buf;
    struct ggml_tensor * keys;   // [d_key, n]: unit rows
    struct ggml_tensor * vals_t; // [n, d_val]: the values transposed
    int n, d_key, d_val;
};

// graph is one computation: a context without data for its tensors and
// the graph built in it.
struct graph {
    struct ggml_context * ctx;
    struct ggml_cgraph * gf;
};

static void set_err(char * err, size_t len, const char * fmt, ...) {
    if (err == NULL || len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static void set_threads(ggml_backend_t be, int n_threads) {
    ggml_backend_dev_t dev = ggml_backend_get_device(be);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : NULL;
    if (n_threads <= 0 || reg == NULL) {
        return;
    }
    ggml_backend_set_n_threads_t fn =
        (ggml_backend_set_n_threads_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    if (fn != NULL) {
        fn(be, n_threads);
    }
}

pp_plugin * pp_plugin_new(const char * dev_name, int n_threads, char * err, size_t err_len) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(dev_name);
    if (dev == NULL) {
        set_err(err, err_len, "no ggml device named %s", dev_name);
        return NULL;
    }
    ggml_backend_t be = ggml_backend_dev_init(dev, NULL);
    if (be == NULL) {
        set_err(err, err_len, "ggml could not start device %s", dev_name);
        return NULL;
    }
    set_threads(be, n_threads);
    pp_plugin * p = calloc(1, sizeof *p);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(be));
    if (p == NULL || ga == NULL) {
        free(p);
        if (ga != NULL) {
            ggml_gallocr_free(ga);
        }
        ggml_backend_free(be);
        set_err(err, err_len, "out of memory opening device %s", dev_name);
        return NULL;
    }
    p->backend = be;
    p->galloc = ga;
    return p;
}

void pp_plugin_free(pp_plugin * p) {
    if (p == NULL) {
        return;
    }
    ggml_gallocr_free(p->galloc);
    ggml_backend_free(p->backend);
    free(p);
}

const char * pp_plugin_last_error(const pp_plugin * p) { return p->err; }

static struct ggml_context * tensor_ctx(size_t n_tensors) {
    struct ggml_init_params ip = {ggml_tensor_overhead() * n_tensors, NULL, true};
    return ggml_init(ip);
}

static void tensor_set(struct ggml_tensor * t, const float * data) {
    ggml_backend_tensor_set(t, data, 0, ggml_nbytes(t));
}

// weights_alloc gives every tensor of ctx memory on the device; 0 on success.
static int weights_alloc(pp_plugin * p, struct ggml_context * ctx, ggml_backend_buffer_t * buf, const char * what) {
    *buf = ggml_backend_alloc_ctx_tensors(ctx, p->backend);
    if (*buf == NULL) {
        set_err(p->err, sizeof p->err, "out of device memory for %s on %s", what, ggml_backend_name(p->backend));
        return -1;
    }
    return 0;
}

pp_plugin_proj * pp_plugin_proj_new(pp_plugin * p, int d_in, int d_out, const float * w1, const float * b1,
                                    const float * w2, const float * b2, float scale) {
    pp_plugin_proj * w = calloc(1, sizeof *w);
    if (w == NULL || (w->ctx = tensor_ctx(4)) == NULL) {
        free(w);
        set_err(p->err, sizeof p->err, "out of memory for the projector");
        return NULL;
    }
    w->w1 = ggml_new_tensor_2d(w->ctx, GGML_TYPE_F32, d_in, d_out);
    w->b1 = ggml_new_tensor_1d(w->ctx, GGML_TYPE_F32, d_out);
    w->w2 = ggml_new_tensor_2d(w->ctx, GGML_TYPE_F32, d_out, d_out);
    w->b2 = ggml_new_tensor_1d(w->ctx, GGML_TYPE_F32, d_out);
    if (weights_alloc(p, w->ctx, &w->buf, "the projector's weights") != 0) {
        pp_plugin_proj_free(w);
        return NULL;
    }
    tensor_set(w->w1, w1);
    tensor_set(w->b1, b1);
    tensor_set(w->w2, w2);
    tensor_set(w->b2, b2);
    w->d_in = d_in;
    w->d_out = d_out;
    w->scale = scale;
    return w;
}

void pp_plugin_proj_free(pp_plugin_proj * w) {
    if (w == NULL) {
        return;
    }
    if (w->buf != NULL) {
        ggml_backend_buffer_free(w->buf);
    }
    ggml_free(w->ctx);
    free(w);
}

static int graph_begin(pp_plugin * p, struct graph * g, size_t n_nodes) {
    size_t mem = ggml_tensor_overhead() * n_nodes + ggml_graph_overhead_custom(n_nodes, false);
    struct ggml_init_params ip = {mem, NULL, true};
    g->ctx = ggml_init(ip);
    if (g->ctx == NULL) {
        set_err(p->err, sizeof p->err, "out of memory for a graph of %zu nodes", n_nodes);
        return -1;
    }
    g->gf = ggml_new_graph_custom(g->ctx, n_nodes, false);
    return 0;
}

// graph_alloc places the graph's inputs and activations on the device.
static int graph_alloc(pp_plugin * p, struct graph * g) {
    if (!ggml_gallocr_alloc_graph(p->galloc, g->gf)) {
        set_err(p->err, sizeof p->err, "out of device memory for a graph on %s", ggml_backend_name(p->backend));
        return -1;
    }
    return 0;
}

static int graph_compute(pp_plugin * p, struct graph * g) {
    enum ggml_status st = ggml_backend_graph_compute(p->backend, g->gf);
    if (st != GGML_STATUS_SUCCESS) {
        set_err(p->err, sizeof p->err, "graph compute on %s failed: %s", ggml_backend_name(p->backend),
                ggml_status_to_string(st));
        return -1;
    }
    return 0;
}

static int project_chunk(pp_plugin * p, const pp_plugin_proj * w, const float * in, int64_t n, float * out) {
    struct graph g;
    if (graph_begin(p, &g, 16) != 0) {
        return -1;
    }
    // The rows as a batch of n single columns [d_in, 1, n], not one matrix
    // [d_in, n]: ggml's matrix-vector path then multiplies them in float32
    // on every device. Vulkan's matrix-matrix path for F32 x F32 computes
    // in float16 on devices with float16 (4e-4 relative error at d_in 300)
    // and, at the pinned commit, corrupted the heap of lavapipe (Mesa
    // 22.3.6) after a few calls. The projection runs once per history.
    //
    // Each product is marked an output so that no backend fuses it with
    // the bias that follows. For a single row (n = 1, every query) ggml's
    // Vulkan backend would run the fused matrix-vector-plus-bias shader
    // (MUL_MAT_ADD), and on lavapipe that corrupted the heap: a projection
    // of one row, then of several, on a fresh backend crashed 5 runs in 5
    // ("double free or corruption"), 0 in 5 with GGML_VK_DISABLE_FUSION=1
    // or with these marks (TestGraphProjectFreshBackends).
    struct ggml_tensor * x = ggml_new_tensor_3d(g.ctx, GGML_TYPE_F32, w->d_in, 1, n);
    ggml_set_input(x);
    struct ggml_tensor * m1 = ggml_mul_mat(g.ctx, w->w1, x);
    ggml_set_output(m1);
    struct ggml_tensor * h = ggml_gelu_erf(g.ctx, ggml_add(g.ctx, m1, w->b1));
    struct ggml_tensor * m2 = ggml_mul_mat(g.ctx, w->w2, h);
    ggml_set_output(m2);
    struct ggml_tensor * y = ggml_add(g.ctx, m2, w->b2);
    y = ggml_scale(g.ctx, y, w->scale);
    ggml_set_output(y);
    ggml_build_forward_expand(g.gf, y);
    int rc = graph_alloc(p, &g);
    if (rc == 0) {
        tensor_set(x, in);
        rc = graph_compute(p, &g);
    }
    if (rc == 0) {
        ggml_backend_tensor_get(y, out, 0, ggml_nbytes(y));
    }
    ggml_free(g.ctx);
    return rc;
}

int pp_plugin_project(pp_plugin * p, const pp_plugin_proj * w, const float * in, int64_t n, float * out) {
    int64_t rows = PROJECT_CHUNK_FLOATS / (w->d_in + 2 * (int64_t) w->d_out);
    if (rows < 1) {
        rows = 1;
    }
    for (int64_t lo = 0; lo < n; lo += rows) {
        int64_t m = n - lo < rows ? n - lo : rows;
        if (project_chunk(p, w, in + lo * w->d_in, m, out + lo * w->d_out) != 0) {
            return -1;
        }
    }
    return 0;
}

// res_fill runs the upload graph: keys into r->keys, values transposed into
// r->vals_t.
static int res_fill(pp_plugin * p, pp_plugin_res * r, const float * keys, const float * values) {
    struct graph g;
    if (graph_begin(p, &g, 16) != 0) {
        return -1;
    }
    struct ggml_tensor * k = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, r->d_key, r->n);
    struct ggml_tensor * v = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, r->d_val, r->n);
    ggml_set_input(k);
    ggml_set_input(v);
    ggml_build_forward_expand(g.gf, ggml_cpy(g.ctx, k, r->keys));
    ggml_build_forward_expand(g.gf, ggml_cpy(g.ctx, ggml_cont(g.ctx, ggml_transpose(g.ctx, v)), r->vals_t));
    int rc = graph_alloc(p, &g);
    if (rc == 0) {
        tensor_set(k, keys);
        tensor_set(v, values);
        rc = graph_compute(p, &g);
    }
    ggml_free(g.ctx);
    return rc;
}

pp_plugin_res * pp_plugin_res_new(pp_plugin * p, const float * keys, const float * values, int n, int d_key, int d_val) {
    pp_plugin_res * r = calloc(1, sizeof *r);
    if (r == NULL || (r->ctx = tensor_ctx(2)) == NULL) {
        free(r);
        set_err(p->err, sizeof p->err, "out of memory for a history");
        return NULL;
    }
    r->n = n;
    r->d_key = d_key;
    r->d_val = d_val;
    r->keys = ggml_new_tensor_2d(r->ctx, GGML_TYPE_F32, d_key, n);
    r->vals_t = ggml_new_tensor_2d(r->ctx, GGML_TYPE_F32, n, d_val);
    if (weights_alloc(p, r->ctx, &r->buf, "a history") != 0 || res_fill(p, r, keys, values) != 0) {
        pp_plugin_res_free(r);
        return NULL;
    }
    return r;
}

void pp_plugin_res_free(pp_plugin_res * r) {
    if (r == NULL) {
        return;
    }
    if (r->buf != NULL) {
        ggml_backend_buffer_free(r->buf);
    }
    ggml_free(r->ctx);
    free(r);
}

// attend adds user r's aggregation for the unit query q [d_key, 1] to the
// graph: the weights [n, 1] in *w, the row [d_val, 1] in *o.
static void attend(struct graph * g, const pp_plugin_res * r, struct ggml_tensor * q, float tau,
                   struct ggml_tensor ** w, struct ggml_tensor ** o) {
    struct ggml_tensor * s = ggml_mul_mat(g->ctx, r->keys, q);
    *w = ggml_soft_max_ext(g->ctx, s, NULL, 1.0f / tau, 0.0f);
    *o = ggml_mul_mat(g->ctx, r->vals_t, *w);
    ggml_set_output(*w);
    ggml_set_output(*o);
    ggml_build_forward_expand(g->gf, *o);
}

// aggregate_read copies every user's row and weights back.
static void aggregate_read(pp_plugin_res * const * users, int n_users, struct ggml_tensor ** ws, struct ggml_tensor ** os,
                           float * out, float * weights) {
    int64_t off = 0;
    for (int u = 0; u < n_users; u++) {
        ggml_backend_tensor_get(os[u], out + (int64_t) u * users[u]->d_val, 0, ggml_nbytes(os[u]));
        if (weights != NULL) {
            ggml_backend_tensor_get(ws[u], weights + off, 0, ggml_nbytes(ws[u]));
        }
        off += users[u]->n;
    }
}

int pp_plugin_aggregate(pp_plugin * p, pp_plugin_res * const * users, int n_users, const float * queries, float tau,
                        float * out, float * weights) {
    struct ggml_tensor ** ws = calloc((size_t) n_users * 3, sizeof *ws);
    struct graph g;
    if (ws == NULL || graph_begin(p, &g, 10 * (size_t) n_users + 16) != 0) {
        free(ws);
        set_err(p->err, sizeof p->err, "out of memory for %d users", n_users);
        return -1;
    }
    struct ggml_tensor ** os = ws + n_users;
    struct ggml_tensor ** qs = ws + 2 * (size_t) n_users;
    const int d_key = users[0]->d_key;
    // a tensor per query, not views of one: a view at u * d_key floats may
    // break a device's storage-buffer alignment (Vulkan asserts on it)
    for (int u = 0; u < n_users; u++) {
        qs[u] = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, d_key, 1);
        ggml_set_input(qs[u]);
        attend(&g, users[u], qs[u], tau, &ws[u], &os[u]);
    }
    int rc = graph_alloc(p, &g);
    for (int u = 0; rc == 0 && u < n_users; u++) {
        tensor_set(qs[u], queries + (size_t) u * d_key);
    }
    if (rc == 0) {
        rc = graph_compute(p, &g);
    }
    if (rc == 0) {
        aggregate_read(users, n_users, ws, os, out, weights);
    }
    ggml_free(g.ctx);
    free(ws);
    return rc;
}

void pp_plugin_project_task_run(void * arg) {
    pp_plugin_project_task * t = (pp_plugin_project_task *) arg;
    t->rc = pp_plugin_project(t->p, t->w, t->in, t->n, t->out);
}

void pp_plugin_aggregate_task_run(void * arg) {
    pp_plugin_aggregate_task * t = (pp_plugin_aggregate_task *) arg;
    t->rc = pp_plugin_aggregate(t->p, t->users, t->n_users, t->queries, t->tau, t->out, t->weights);
}
