// The plug-in's inference graphs (projector, aggregation over a user's
// history) on one ggml backend device: the path for devices without a
// hand-written kernel library (Vulkan, or any device ggml runs). Plain C;
// every object is freed by its own function; a pp_plugin is used by one
// thread at a time (the Go side locks).
#ifndef PPLUG_PLUGIN_H
#define PPLUG_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pp_plugin pp_plugin;
typedef struct pp_plugin_proj pp_plugin_proj;
typedef struct pp_plugin_res pp_plugin_res;

// pp_plugin_new opens the device named dev (ggml_backend_dev_by_name, e.g.
// "CPU", "Vulkan0"); n_threads applies where the backend has threads. On
// failure it returns NULL with the reason in err.
pp_plugin * pp_plugin_new(const char * dev, int n_threads, char * err, size_t err_len);
void pp_plugin_free(pp_plugin * p);
const char * pp_plugin_last_error(const pp_plugin * p);

// pp_plugin_proj_new copies the projector's weights to the device:
// w1 [d_out][d_in], b1 [d_out], w2 [d_out][d_out], b2 [d_out], row-major.
pp_plugin_proj * pp_plugin_proj_new(pp_plugin * p, int d_in, int d_out, const float * w1, const float * b1,
                                    const float * w2, const float * b2, float scale);
void pp_plugin_proj_free(pp_plugin_proj * w);

// pp_plugin_project computes out [n][d_out] = scale (w2 gelu_erf(w1 x + b1) + b2)
// for the n rows of in [n][d_in]; 0 on success.
int pp_plugin_project(pp_plugin * p, const pp_plugin_proj * w, const float * in, int64_t n, float * out);

// pp_plugin_res_new keeps one user's history on the device: keys [n][d_key]
// (unit rows: the caller normalises them) and values [n][d_val]; n >= 1.
pp_plugin_res * pp_plugin_res_new(pp_plugin * p, const float * keys, const float * values, int n, int d_key, int d_val);
void pp_plugin_res_free(pp_plugin_res * r);

// pp_plugin_aggregate computes, for each of the n_users users (same d_key,
// d_val, n >= 1 items each) with the unit query q_b (queries
// [n_users][d_key]): w = softmax(q_b . k_i / tau), out_b = sum_i w_i v_i. weights (may be
// NULL) receives every user's weights in order; 0 on success.
int pp_plugin_aggregate(pp_plugin * p, pp_plugin_res * const * users, int n_users, const float * queries, float tau,
                        float * out, float * weights);

// Tasks for the compute thread (pp_task_fn): pp_plugin_project and
// pp_plugin_aggregate with their arguments and result.
typedef struct pp_plugin_project_task {
    pp_plugin *            p;
    const pp_plugin_proj * w;
    const float *          in;
    int64_t                n;
    float *                out;
    int                    rc;
} pp_plugin_project_task;
void pp_plugin_project_task_run(void * arg);

typedef struct pp_plugin_aggregate_task {
    pp_plugin *            p;
    pp_plugin_res * const * users;
    int                    n_users;
    const float *          queries;
    float                  tau;
    float *                out;
    float *                weights;
    int                    rc;
} pp_plugin_aggregate_task;
void pp_plugin_aggregate_task_run(void * arg);

#ifdef __cplusplus
}
#endif

#endif
