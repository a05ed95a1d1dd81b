// The C++ boundary of package cgo: every llama.cpp call that can throw a
// C++ exception goes through one of these extern "C" functions, which catch
// it and hand its message to Go in a pp_error. An exception that reached a
// cgo frame would terminate the process.

#include "shim.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

namespace {

// fail records a caught exception in e.
void fail(pp_error * e, const char * what) {
    e->caught = 1;
    std::snprintf(e->msg, sizeof(e->msg), "%s", what ? what : "unknown C++ exception");
}

// guarded runs f, turning any exception into e.
template <typename F>
void guarded(pp_error * e, F f) {
    e->caught = 0;
    e->msg[0] = 0;
    try {
        f();
    } catch (const std::exception & x) {
        fail(e, x.what());
    } catch (...) {
        fail(e, nullptr);
    }
}

// grammar_allows reports whether grammar (a grammar sampler, or NULL for
// none) lets tok through in its current state.
bool grammar_allows(llama_sampler * grammar, llama_token tok) {
    if (grammar == nullptr) {
        return true;
    }
    llama_token_data one = {tok, 0.0f, 0.0f};
    llama_token_data_array arr = {&one, 1, -1, false};
    llama_sampler_apply(grammar, &arr);
    return std::isfinite(one.logit);
}

} // namespace

extern "C" {

struct llama_model * pp_guard_model_load(const char * path, struct llama_model_params p, pp_error * e) {
    llama_model * m = nullptr;
    guarded(e, [&] { m = llama_model_load_from_file(path, p); });
    return m;
}

struct llama_context * pp_guard_init_from_model(struct llama_model * m, struct llama_context_params p, pp_error * e) {
    llama_context * c = nullptr;
    guarded(e, [&] { c = llama_init_from_model(m, p); });
    return c;
}

int32_t pp_guard_decode(struct llama_context * ctx, pp_batch * pb,
                        const llama_token * tok, const float * embd,
                        const llama_pos * pos, const llama_seq_id * seq,
                        const int8_t * out, int32_t n, bool encode, pp_error * e) {
    int32_t rc = PP_RC_EXCEPTION;
    guarded(e, [&] {
        rc = encode ? pp_encode(ctx, pb, tok, embd, pos, seq, out, n)
                    : pp_decode(ctx, pb, tok, embd, pos, seq, out, n);
    });
    return e->caught ? PP_RC_EXCEPTION : rc;
}

int32_t pp_guard_tokenize(const struct llama_vocab * v, const char * text, int32_t len,
                          llama_token * out, int32_t cap, bool add_special, bool parse_special, pp_error * e) {
    int32_t n = 0;
    guarded(e, [&] { n = llama_tokenize(v, text, len, out, cap, add_special, parse_special); });
    return n;
}

int32_t pp_guard_token_to_piece(const struct llama_vocab * v, llama_token t, char * buf, int32_t n,
                                bool special, pp_error * e) {
    int32_t r = 0;
    guarded(e, [&] { r = llama_token_to_piece(v, t, buf, n, 0, special); });
    return r;
}

int32_t pp_guard_detokenize(const struct llama_vocab * v, const llama_token * toks, int32_t n_toks,
                            char * buf, int32_t n, bool remove_special, bool unparse_special, pp_error * e) {
    int32_t r = 0;
    guarded(e, [&] { r = llama_detokenize(v, toks, n_toks, buf, n, remove_special, unparse_special); });
    return r;
}

int32_t pp_guard_chat_apply(const char * tmpl, const struct llama_chat_message * msgs, size_t n,
                            bool add_ass, char * buf, int32_t len, pp_error * e) {
    int32_t r = -1;
    guarded(e, [&] { r = llama_chat_apply_template(tmpl, msgs, n, add_ass, buf, len); });
    return r;
}

struct llama_sampler * pp_guard_grammar_init(const struct llama_vocab * v, const char * grammar,
                                             const char * root, pp_error * e) {
    llama_sampler * s = nullptr;
    guarded(e, [&] { s = llama_sampler_init_grammar(v, grammar, root); });
    return s;
}

// pp_guard_sample is llama_sampler_sample with checks where llama.cpp
// would abort: a selection outside the candidates, and a grammar that
// allows no token here (every logit -inf), whose token accepted would end
// in GGML_ABORT or an empty grammar stack. The chain is reset after an
// exception, so that a grammar left without stacks is never applied again.
int32_t pp_guard_sample(struct llama_sampler * chain, struct llama_context * ctx, int32_t idx,
                        llama_token * tok, pp_error * e) {
    int32_t rc = PP_SAMPLE_OK;
    guarded(e, [&] {
        const float * logits = llama_get_logits_ith(ctx, idx);
        if (logits == nullptr) {
            rc = PP_SAMPLE_NO_LOGITS;
            return;
        }
        const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
        const int32_t n_vocab = llama_vocab_n_tokens(vocab);
        std::vector<llama_token_data> cur(n_vocab);
        for (llama_token t = 0; t < n_vocab; t++) {
            cur[t] = llama_token_data{t, logits[t], 0.0f};
        }
        llama_token_data_array cur_p = {cur.data(), cur.size(), -1, false};
        llama_sampler_apply(chain, &cur_p);
        if (cur_p.selected < 0 || cur_p.selected >= (int64_t) cur_p.size) {
            rc = PP_SAMPLE_NONE;
            return;
        }
        if (cur_p.data[cur_p.selected].logit == -INFINITY) {
            rc = PP_SAMPLE_DEAD_END;
            return;
        }
        *tok = cur_p.data[cur_p.selected].id;
        llama_sampler_accept(chain, *tok);
    });
    if (e->caught) {
        pp_guard_reset(chain, nullptr);
        return PP_RC_EXCEPTION;
    }
    return rc;
}

int32_t pp_guard_accept(struct llama_sampler * chain, struct llama_sampler * grammar, llama_token tok, pp_error * e) {
    int32_t rc = PP_SAMPLE_OK;
    guarded(e, [&] {
        if (!grammar_allows(grammar, tok)) {
            rc = PP_SAMPLE_DEAD_END;
            return;
        }
        llama_sampler_accept(chain, tok);
    });
    if (e->caught) {
        pp_guard_reset(chain, nullptr);
        return PP_RC_EXCEPTION;
    }
    return rc;
}

void pp_guard_reset(struct llama_sampler * chain, pp_error * e) {
    pp_error ignored;
    guarded(e ? e : &ignored, [&] { llama_sampler_reset(chain); });
}

int32_t pp_guard_bench_c_loop(struct llama_context * ctx, pp_abort * a, const llama_token * prompt,
                              int32_t n_prompt, int32_t n_gen,
                              int64_t * t_prompt_us, int64_t * t_gen_us, pp_error * e) {
    int32_t rc = PP_RC_EXCEPTION;
    guarded(e, [&] { rc = pp_bench_c_loop(ctx, a, prompt, n_prompt, n_gen, t_prompt_us, t_gen_us); });
    return e->caught ? PP_RC_EXCEPTION : rc;
}

int32_t pp_guard_c_cycle(const char * path, int32_t n, pp_error * e) {
    int32_t rc = -1;
    guarded(e, [&] { rc = pp_c_cycle(path, n); });
    return e->caught ? -1 : rc;
}

} // extern "C"
