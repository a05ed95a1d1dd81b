// The compute thread (see computethread.go): one C thread that runs every
// ggml computation of the process with more than one CPU thread, and never
// enters Go. A caller hands it one task at a time and waits for a byte on a
// pipe, parked in Go's network poller, so no Go thread sits in a long cgo
// call while it computes.
#define _POSIX_C_SOURCE 200809L

#include "shim.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t ct_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  ct_cv = PTHREAD_COND_INITIALIZER;
static pp_task_fn ct_fn;
static void *     ct_arg;
static int        ct_done_fd = -1;
static _Thread_local bool ct_self;

static void * ct_main(void * unused) {
    (void) unused;
    ct_self = true;
    for (;;) {
        pthread_mutex_lock(&ct_mu);
        while (ct_fn == NULL) {
            pthread_cond_wait(&ct_cv, &ct_mu);
        }
        pp_task_fn fn  = ct_fn;
        void *     arg = ct_arg;
        pthread_mutex_unlock(&ct_mu);

        fn(arg);

        pthread_mutex_lock(&ct_mu);
        ct_fn  = NULL;
        ct_arg = NULL;
        pthread_mutex_unlock(&ct_mu);
        const char b = 1;
        while (write(ct_done_fd, &b, 1) < 0 && errno == EINTR) {
        }
    }
    return NULL;
}

int pp_compute_start(int done_fd) {
    ct_done_fd = done_fd;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) {
        return rc;
    }
    // ggml's graph code and llama.cpp's decode keep sizeable frames.
    pthread_attr_setstacksize(&attr, 8u << 20);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    rc = pthread_create(&t, &attr, ct_main, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

void pp_compute_submit(pp_task_fn fn, void * arg) {
    pthread_mutex_lock(&ct_mu);
    ct_fn  = fn;
    ct_arg = arg;
    pthread_cond_signal(&ct_cv);
    pthread_mutex_unlock(&ct_mu);
}

void pp_task_call(pp_task_fn fn, void * arg) { fn(arg); }

void pp_decode_task_run(void * arg) {
    pp_decode_task * t = (pp_decode_task *) arg;
    pp_log_capture_begin();
    t->rc = pp_guard_decode(t->ctx, t->pb, t->tok, t->embd, t->pos, t->seq, t->out, t->n, t->encode, &t->e);
    // The caller decides from rc whether the lines are the reason.
    t->n_reason = pp_log_capture_end(t->reason, sizeof(t->reason));
}

void pp_bench_task_run(void * arg) {
    pp_bench_task * t = (pp_bench_task *) arg;
    t->rc = pp_guard_bench_c_loop(t->ctx, t->abort, t->prompt, t->n_prompt, t->n_gen, &t->t_prompt_us, &t->t_gen_us, &t->e);
}

void pp_probe_task_run(void * arg) { *(bool *) arg = ct_self; }
