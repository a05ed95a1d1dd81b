// llama-cbench: llama.cpp driven by a plain C loop, built by llama.cpp's own
// CMake configuration (PPLUG_LLAMA_BASELINE, `make cpu-baseline`). It is the
// baseline of scripts/bench-cpu.sh: what llama-bench would measure for the
// same tests, without pplug's build or binding in the way.
//
//   llama-cbench -m MODEL [-p 512] [-n 128] [-t CPUS] [-r 5] [-b 2048] [-ub 512]
//                [-fa auto|on|off] [--seed 42] [-v]
//
// Tests, as llama-bench runs them: pp N is the prompt of N random tokens
// (BOS first where the model adds one), decoded in n_batch pieces (one
// llama_decode with the defaults); tg N is N single-token decodes of random
// tokens. Each test gets a fresh context, one warm-up run (pp: one batch,
// tg: one token) and -r timed repetitions, each on an empty KV cache. One
// JSON line per test on stdout, with llama-bench's field names. The context
// keeps llama.cpp's defaults (no threadpool attached: OpenMP keeps the
// workers). Exit status: 0, 1 when llama.cpp fails, 2 for usage errors.

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "llama.h"

#ifndef CBENCH_COMMIT
#define CBENCH_COMMIT "unknown"
#endif

enum { EXIT_USAGE = 2, MAX_THREADS = 512, MAX_REPS = 100000 };

struct options {
    const char * model;
    int n_prompt, n_gen, n_threads, reps, n_batch, n_ubatch;
    enum llama_flash_attn_type fa;
    uint64_t seed;
    int verbose;
};

struct test {
    int n_prompt, n_gen;
};

static int verbose_log;

static void usage(FILE * f) {
    fprintf(f,
            "usage: llama-cbench -m MODEL [-p 512] [-n 128] [-t THREADS] [-r 5] [-b 2048] [-ub 512]\n"
            "                    [-fa auto|on|off] [--seed 42] [-v]\n"
            "  -p N   prompt test: N random tokens, decoded in n_batch pieces (0 skips)\n"
            "  -n N   generation test: N single-token decodes (0 skips)\n"
            "  -r N   timed repetitions after one warm-up run\n"
            "prints one JSON line per test (llama-bench's fields: n_prompt, n_gen, n_threads,\n"
            "avg_ts, stddev_ts, samples_ns, ...)\n");
}

static int usage_error(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama-cbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (llama-cbench -h lists the options)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

// parse_int reads a whole decimal number in [lo, hi].
static int parse_int(const char * flag, const char * s, long lo, long hi, int * out) {
    char * end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return usage_error("%s %s: want a whole number", flag, s);
    }
    if (v < lo || v > hi) {
        return usage_error("%s %ld: want %ld to %ld", flag, v, lo, hi);
    }
    *out = (int) v;
    return 0;
}

static int parse_fa(const char * s, enum llama_flash_attn_type * out) {
    if (strcmp(s, "auto") == 0 || strcmp(s, "-1") == 0) {
        *out = LLAMA_FLASH_ATTN_TYPE_AUTO;
    } else if (strcmp(s, "on") == 0 || strcmp(s, "1") == 0) {
        *out = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    } else if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        *out = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    } else {
        return usage_error("-fa %s: want auto, on or off", s);
    }
    return 0;
}

static int parse_seed(const char * s, uint64_t * out) {
    char * end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        return usage_error("--seed %s: want a whole number >= 0", s);
    }
    *out = (uint64_t) v;
    return 0;
}

// parse_value handles one option that takes a value.
static int parse_value(struct options * o, const char * flag, const char * v) {
    if (strcmp(flag, "-m") == 0 || strcmp(flag, "--model") == 0) {
        o->model = v;
        return 0;
    }
    if (strcmp(flag, "-p") == 0 || strcmp(flag, "--n-prompt") == 0) {
        return parse_int(flag, v, 0, INT_MAX / 2, &o->n_prompt);
    }
    if (strcmp(flag, "-n") == 0 || strcmp(flag, "--n-gen") == 0) {
        return parse_int(flag, v, 0, INT_MAX / 2, &o->n_gen);
    }
    if (strcmp(flag, "-t") == 0 || strcmp(flag, "--threads") == 0) {
        return parse_int(flag, v, 1, MAX_THREADS, &o->n_threads);
    }
    if (strcmp(flag, "-r") == 0 || strcmp(flag, "--repetitions") == 0) {
        return parse_int(flag, v, 1, MAX_REPS, &o->reps);
    }
    if (strcmp(flag, "-b") == 0 || strcmp(flag, "--batch-size") == 0) {
        return parse_int(flag, v, 1, INT_MAX / 2, &o->n_batch);
    }
    if (strcmp(flag, "-ub") == 0 || strcmp(flag, "--ubatch-size") == 0) {
        return parse_int(flag, v, 1, INT_MAX / 2, &o->n_ubatch);
    }
    if (strcmp(flag, "-fa") == 0 || strcmp(flag, "--flash-attn") == 0) {
        return parse_fa(v, &o->fa);
    }
    if (strcmp(flag, "--seed") == 0) {
        return parse_seed(v, &o->seed);
    }
    return usage_error("unknown option %s", flag);
}

// parse_args fills o; it returns 0, EXIT_USAGE, or -1 after printing the help.
static int parse_args(int argc, char ** argv, struct options * o) {
    for (int i = 1; i < argc; i++) {
        const char * a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            continue;
        }
        if (a[0] != '-') {
            return usage_error("unexpected argument %s", a);
        }
        if (i + 1 >= argc) {
            return usage_error("%s needs a value", a);
        }
        int rc = parse_value(o, a, argv[++i]);
        if (rc != 0) {
            return rc;
        }
    }
    if (o->model == NULL) {
        return usage_error("no model given: pass -m FILE (a GGUF model)");
    }
    if (o->n_prompt == 0 && o->n_gen == 0) {
        return usage_error("nothing to run: -p and -n are both 0");
    }
    return 0;
}

// ---- randomness and time -----------------------------------------------

static uint64_t rng_state;

// rng_next is splitmix64: random token ids, the same for a given --seed.
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static llama_token random_token(const struct llama_vocab * vocab) {
    return (llama_token) (rng_next() % (uint64_t) llama_vocab_n_tokens(vocab));
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

// ---- the tests ----------------------------------------------------------

static void log_cb(enum ggml_log_level level, const char * text, void * user) {
    (void) user;
    if (verbose_log || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

// run_prompt decodes n random tokens in n_batch pieces.
static int run_prompt(struct llama_context * ctx, int n, int n_batch) {
    const struct llama_model * model = llama_get_model(ctx);
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    llama_token * tokens = malloc(sizeof(llama_token) * (size_t) n_batch);
    if (tokens == NULL) {
        return -1;
    }
    int rc = 0;
    for (int done = 0; done < n && rc == 0; done += n_batch) {
        int k = n - done < n_batch ? n - done : n_batch;
        for (int i = 0; i < k; i++) {
            tokens[i] = random_token(vocab);
        }
        if (done == 0 && llama_vocab_get_add_bos(vocab)) {
            tokens[0] = llama_vocab_bos(vocab);
        }
        rc = llama_decode(ctx, llama_batch_get_one(tokens, k));
    }
    llama_synchronize(ctx);
    free(tokens);
    return rc;
}

// run_gen decodes n single random tokens, BOS first where the model adds one.
static int run_gen(struct llama_context * ctx, int n) {
    const struct llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    llama_token token = llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : random_token(vocab);
    for (int i = 0; i < n; i++) {
        int rc = llama_decode(ctx, llama_batch_get_one(&token, 1));
        if (rc != 0) {
            return rc;
        }
        llama_synchronize(ctx);
        token = random_token(vocab);
    }
    return 0;
}

// run_once clears the KV cache and times one run of the test (n_prompt or
// n_gen tokens, the other 0).
static int run_once(struct llama_context * ctx, struct test t, int n_batch, uint64_t * ns) {
    llama_memory_clear(llama_get_memory(ctx), true);
    uint64_t t0 = now_ns();
    int rc = t.n_prompt > 0 ? run_prompt(ctx, t.n_prompt, n_batch) : run_gen(ctx, t.n_gen);
    *ns = now_ns() - t0;
    return rc;
}

// ---- output -------------------------------------------------------------

static void json_string(const char * s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

// mean_std is llama-bench's avg and stdev (n - 1 in the denominator).
static void mean_std(const double * xs, int n, double * mean, double * sd) {
    double s = 0, v = 0;
    for (int i = 0; i < n; i++) {
        s += xs[i];
    }
    *mean = s / n;
    for (int i = 0; i < n; i++) {
        v += (xs[i] - *mean) * (xs[i] - *mean);
    }
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0;
}

static void print_list(const char * name, const double * xs, int n, const char * fmt) {
    printf(", \"%s\": [", name);
    for (int i = 0; i < n; i++) {
        printf(i ? ", " : "");
        printf(fmt, xs[i]);
    }
    putchar(']');
}

static const char * cpu_description(void) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    return dev ? ggml_backend_dev_description(dev) : "";
}

static void print_model(const struct options * o, const struct llama_model * model) {
    char desc[256];
    llama_model_desc(model, desc, sizeof desc);
    printf(", \"cpu_info\": ");
    json_string(cpu_description());
    printf(", \"backends\": \"CPU\", \"model_filename\": ");
    json_string(o->model);
    printf(", \"model_type\": ");
    json_string(desc);
    printf(", \"model_size\": %llu, \"model_n_params\": %llu",
           (unsigned long long) llama_model_size(model), (unsigned long long) llama_model_n_params(model));
}

// print_result writes one JSON line: the test, its settings and the times.
static void print_result(const struct options * o, const struct llama_model * model, struct test t,
                         const uint64_t * ns, int n) {
    double * xs = malloc(sizeof(double) * (size_t) n * 2);
    if (xs == NULL) {
        return;
    }
    double * ts = xs + n;
    for (int i = 0; i < n; i++) {
        xs[i] = (double) ns[i];
        ts[i] = 1e9 * (t.n_prompt + t.n_gen) / (double) (ns[i] ? ns[i] : 1);
    }
    double avg_ns, sd_ns, avg_ts, sd_ts;
    mean_std(xs, n, &avg_ns, &sd_ns);
    mean_std(ts, n, &avg_ts, &sd_ts);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));

    printf("{\"build_commit\": \"%s\", \"build_number\": 0", CBENCH_COMMIT);
    print_model(o, model);
    printf(", \"n_batch\": %d, \"n_ubatch\": %d, \"n_threads\": %d, \"flash_attn\": %d",
           o->n_batch, o->n_ubatch, o->n_threads, (int) o->fa);
    printf(", \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": 0, \"test_time\": \"%s\"", t.n_prompt, t.n_gen, when);
    printf(", \"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f",
           avg_ns, sd_ns, avg_ts, sd_ts);
    print_list("samples_ns", xs, n, "%.0f");
    print_list("samples_ts", ts, n, "%.6f");
    printf(", \"test\": \"%s%d\", \"note\": \"llama.cpp's CMake build (OpenMP), plain C loop\"}\n",
           t.n_prompt > 0 ? "pp" : "tg", t.n_prompt > 0 ? t.n_prompt : t.n_gen);
    fflush(stdout);
    free(xs);
}

// new_context is a context for test t with llama.cpp's defaults and the
// options' sizes: n_prompt + n_gen positions (at least 16), as pplug bench.
static struct llama_context * new_context(struct llama_model * model, const struct options * o, struct test t) {
    struct llama_context_params p = llama_context_default_params();
    int need = t.n_prompt + t.n_gen + (t.n_prompt == 0 ? 1 : 0);
    p.n_ctx = (uint32_t) (need < 16 ? 16 : need);
    p.n_batch = (uint32_t) o->n_batch;
    p.n_ubatch = (uint32_t) o->n_ubatch;
    p.n_threads = o->n_threads;
    p.n_threads_batch = o->n_threads;
    p.flash_attn_type = o->fa;
    return llama_init_from_model(model, p);
}

// run_test runs one warm-up and the repetitions of t, and prints the result.
static int run_test(struct llama_model * model, const struct options * o, struct test t) {
    struct llama_context * ctx = new_context(model, o, t);
    if (ctx == NULL) {
        fprintf(stderr, "llama-cbench: cannot create a context for %s (see the log above; -v shows all of it)\n",
                o->model);
        return 1;
    }
    int n_batch = (int) llama_n_batch(ctx);
    uint64_t * ns = calloc((size_t) o->reps, sizeof(uint64_t));
    if (ns == NULL) {
        fprintf(stderr, "llama-cbench: out of memory for %d repetitions\n", o->reps);
        llama_free(ctx);
        return 1;
    }
    struct test warm = { t.n_prompt < n_batch ? t.n_prompt : n_batch, t.n_gen > 0 ? 1 : 0 };
    uint64_t ignored;
    int rc = run_once(ctx, warm, n_batch, &ignored);
    for (int i = 0; i < o->reps && rc == 0; i++) {
        rc = run_once(ctx, t, n_batch, &ns[i]);
    }
    if (rc == 0) {
        print_result(o, model, t, ns, o->reps);
    } else {
        fprintf(stderr, "llama-cbench: llama_decode failed (%d) on %s\n", rc, o->model);
    }
    free(ns);
    llama_free(ctx);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char ** argv) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct options o = { .n_prompt = 512, .n_gen = 128, .n_threads = ncpu > 0 && ncpu < MAX_THREADS ? (int) ncpu : 4, .reps = 5,
                         .n_batch = 2048, .n_ubatch = 512, .fa = LLAMA_FLASH_ATTN_TYPE_AUTO, .seed = 42 };
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }
    verbose_log = o.verbose;
    rng_state = o.seed;
    llama_log_set(log_cb, NULL);
    llama_backend_init();

    struct llama_model * model = llama_model_load_from_file(o.model, llama_model_default_params());
    if (model == NULL) {
        fprintf(stderr, "llama-cbench: cannot load the model %s: check that it is a GGUF file llama.cpp %s reads\n",
                o.model, CBENCH_COMMIT);
        llama_backend_free();
        return 1;
    }
    struct test tests[2] = { { o.n_prompt, 0 }, { 0, o.n_gen } };
    rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (tests[i].n_prompt + tests[i].n_gen > 0) {
            rc = run_test(model, &o, tests[i]);
        }
    }
    llama_model_free(model);
    llama_backend_free();
    return rc;
}
