package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/pplug/pplug/llama"
)

// OpenAI fields the server does not implement are refused with a 400
// naming the field, unless their value asks for nothing (n 1, echo false,
// no tools, ...); fields it does not know at all are ignored, as OpenAI
// does.
func TestUnimplementedFieldsAreRefused(t *testing.T) {
	ts := startServer(t, 1, "")
	base := func(route string) map[string]any {
		if route == "/v1/chat/completions" {
			return map[string]any{"messages": []map[string]string{{"role": "user", "content": "Hi"}}, "max_tokens": 2}
		}
		return map[string]any{"prompt": "Once", "max_tokens": 2}
	}
	tool := []any{map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}
	for _, route := range []string{"/v1/completions", "/v1/chat/completions"} {
		for _, tc := range []struct {
			field string
			value any
		}{
			{"n", 2}, {"best_of", 3}, {"echo", true}, {"suffix", "The end."}, {"tools", tool},
			{"tool_choice", "auto"}, {"functions", []any{map[string]any{"name": "f"}}}, {"function_call", "auto"},
			{"audio", map[string]any{"voice": "alloy"}}, {"modalities", []string{"text", "audio"}},
			{"prediction", map[string]any{"type": "content", "content": "x"}}, {"web_search_options", map[string]any{}},
		} {
			req := base(route)
			req[tc.field] = tc.value
			r, b := ts.post(t, route, "", req)
			if r.StatusCode != http.StatusBadRequest || errorParam(b) != tc.field || errorCode(b) != "unsupported_parameter" {
				t.Errorf("%s %s=%v: %d %s", route, tc.field, tc.value, r.StatusCode, b)
			}
		}
		for _, tc := range []struct {
			field string
			value any
		}{
			{"n", 1}, {"best_of", 1}, {"echo", false}, {"suffix", ""}, {"tools", []any{}}, {"tool_choice", "none"},
			{"modalities", []string{"text"}}, {"audio", nil}, {"some_future_field", 42}, {"metadata", map[string]string{"a": "b"}},
		} {
			req := base(route)
			req[tc.field] = tc.value
			if r, b := ts.post(t, route, "", req); r.StatusCode != 200 {
				t.Errorf("%s %s=%v (asks for nothing): %d %s", route, tc.field, tc.value, r.StatusCode, b)
			}
		}
	}
	r, b := ts.post(t, "/v1/completions", "", map[string]any{"prompt": "Once", "max_completion_tokens": 100000})
	if r.StatusCode != 400 || errorParam(b) != "max_completion_tokens" || !strings.Contains(string(b), "--n-predict") {
		t.Errorf("max_completion_tokens over the limit: %d %s", r.StatusCode, b)
	}
}

// Bad values of the implemented fields are a 400 naming the field.
func TestSamplingFieldValuesAreChecked(t *testing.T) {
	ts := startServer(t, 1, "")
	chat := func(extra map[string]any) map[string]any {
		req := map[string]any{"messages": []map[string]string{{"role": "user", "content": "Hi"}}, "max_tokens": 2}
		for k, v := range extra {
			req[k] = v
		}
		return req
	}
	nv := ts.m.NVocab()
	for _, tc := range []struct {
		route string
		req   map[string]any
		param string
	}{
		{"/v1/chat/completions", chat(map[string]any{"logit_bias": map[string]any{"abc": 1}}), "logit_bias"},
		{"/v1/chat/completions", chat(map[string]any{"logit_bias": map[string]any{strconv.Itoa(nv): 1}}), "logit_bias"},
		{"/v1/chat/completions", chat(map[string]any{"logit_bias": map[string]any{"-1": 1}}), "logit_bias"},
		{"/v1/chat/completions", chat(map[string]any{"logit_bias": map[string]any{"5": 101}}), "logit_bias"},
		{"/v1/chat/completions", chat(map[string]any{"logit_bias": map[string]any{"5": -100.5}}), "logit_bias"},
		{"/v1/chat/completions", chat(map[string]any{"top_logprobs": 2}), "top_logprobs"},
		{"/v1/chat/completions", chat(map[string]any{"logprobs": true, "top_logprobs": 21}), "top_logprobs"},
		{"/v1/chat/completions", chat(map[string]any{"logprobs": true, "top_logprobs": -1}), "top_logprobs"},
		{"/v1/completions", map[string]any{"prompt": "Once", "logprobs": 21}, "logprobs"},
		{"/v1/completions", map[string]any{"prompt": "Once", "logprobs": -1}, "logprobs"},
		{"/v1/chat/completions", chat(map[string]any{"response_format": map[string]any{"type": "xml"}}), "response_format"},
		{"/v1/chat/completions", chat(map[string]any{"response_format": map[string]any{"type": "json_schema"}}), "response_format"},
		{"/v1/chat/completions", chat(map[string]any{"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "x"}}}), "response_format"},
		{"/v1/chat/completions", chat(map[string]any{"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"schema": map[string]any{"type": "string", "pattern": "a+"}}}}), "response_format"},
		{"/v1/chat/completions", chat(map[string]any{"response_format": map[string]any{"type": "json_object"}, "ignore_eos": true}), "ignore_eos"},
	} {
		r, b := ts.post(t, tc.route, "", tc.req)
		if r.StatusCode != http.StatusBadRequest || errorParam(b) != tc.param {
			t.Errorf("%s %v: %d %s, want 400 naming %s", tc.route, tc.req, r.StatusCode, b, tc.param)
		}
	}
}

// completion runs a whole text completion and decodes it.
func (ts *testServer) completion(t *testing.T, req map[string]any) completionResponse {
	t.Helper()
	r, b := ts.post(t, "/v1/completions", "", req)
	var cr completionResponse
	if r.StatusCode != 200 || json.Unmarshal(b, &cr) != nil || len(cr.Choices) != 1 {
		t.Fatalf("%v: %d %s", req, r.StatusCode, b)
	}
	return cr
}

// logit_bias moves tokens (-100 bans, +100 forces) and ignore_eos keeps
// generating past the end-of-generation token.
func TestLogitBiasAndIgnoreEOS(t *testing.T) {
	ts := startServer(t, 1, "")
	req := map[string]any{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
	req["logprobs"] = 0
	plain := ts.completion(t, req).Choices[0]
	delete(req, "logprobs")
	// Ban every token that reads as the first one generated.
	ban := map[string]any{}
	for tok := range llama.Token(ts.m.NVocab()) {
		if string(ts.m.TokenPiece(tok, false)) == plain.Logprobs.Tokens[0] {
			ban[fmt.Sprint(tok)] = -100
		}
	}
	req["logit_bias"] = ban
	if got := ts.complete(t, req); len(ban) == 0 || strings.HasPrefix(got, plain.Logprobs.Tokens[0]) {
		t.Errorf("banning %v: %q still starts with %q", ban, got, plain.Logprobs.Tokens[0])
	}
	forced := ts.m.TokenPiece(100, false)
	req["logit_bias"] = map[string]any{"100": 100}
	if got := ts.complete(t, req); got != strings.Repeat(string(forced), 8) {
		t.Errorf("token 100 forced: %q, want 8 times %q", got, forced)
	}
	// EOS pushed up ends at once; with ignore_eos it runs to max_tokens.
	eos := fmt.Sprint(ts.m.EOS())
	cr := ts.completion(t, map[string]any{"prompt": "Once", "max_tokens": 6, "temperature": 0, "logit_bias": map[string]any{eos: 100}})
	if *cr.Choices[0].FinishReason != "stop" || cr.Usage.CompletionTokens != 0 {
		t.Errorf("EOS +100: %+v %+v", cr.Choices[0], cr.Usage)
	}
	cr = ts.completion(t, map[string]any{"prompt": "Once", "max_tokens": 6, "temperature": 0, "logit_bias": map[string]any{eos: 100}, "ignore_eos": true})
	if *cr.Choices[0].FinishReason != "length" || cr.Usage.CompletionTokens != 6 {
		t.Errorf("EOS +100 with ignore_eos: %+v %+v", cr.Choices[0], cr.Usage)
	}
}

// response_format constrains the output through the grammar sampler: a
// JSON object, or a document of a JSON schema.
func TestResponseFormat(t *testing.T) {
	ts := startServer(t, 1, "")
	ctx := context.Background()
	client := openai.NewClient(option.WithBaseURL(ts.url+"/v1/"), option.WithMaxRetries(0))
	schema := map[string]any{"type": "object", "properties": map[string]any{"color": map[string]any{"enum": []string{"red", "green"}}, "n": map[string]any{"type": "integer"}}, "required": []string{"color", "n"}}
	params := openai.ChatCompletionNewParams{
		Model:       "pplug",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Pick a color.")},
		MaxTokens:   openai.Int(60),
		Temperature: openai.Float(0),
		User:        openai.String("lily"),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "pick", Schema: schema}}},
	}
	res, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Color string `json:"color"`
		N     *int   `json:"n"`
	}
	text := res.Choices[0].Message.Content
	if res.Choices[0].FinishReason != "stop" || json.Unmarshal([]byte(text), &got) != nil || (got.Color != "red" && got.Color != "green") || got.N == nil {
		t.Errorf("json_schema: %q (%s)", text, res.Choices[0].FinishReason)
	}
	params.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	params.MaxTokens = openai.Int(40)
	res, err = client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	text = res.Choices[0].Message.Content
	var obj map[string]any
	if !strings.HasPrefix(text, "{") || res.Choices[0].FinishReason == "stop" && json.Unmarshal([]byte(text), &obj) != nil {
		t.Errorf("json_object: %q (%s)", text, res.Choices[0].FinishReason)
	}
	// A logit_bias that bans every token beside a grammar crashes nothing:
	// the grammar still picks among its own tokens.
	all := map[string]any{}
	for tok := range ts.m.NVocab() {
		all[fmt.Sprint(tok)] = -100
	}
	for _, temp := range []float64{0, 1} {
		cr := ts.completion(t, map[string]any{"prompt": "Once", "max_tokens": 12, "temperature": temp, "seed": 1, "logit_bias": all, "response_format": map[string]any{"type": "json_object"}})
		if !strings.HasPrefix(cr.Choices[0].Text, "{") {
			t.Errorf("every token banned, temperature %v: %q", temp, cr.Choices[0].Text)
		}
	}
	// The legacy completions route takes it too; type text constrains nothing.
	cr := ts.completion(t, map[string]any{"prompt": "Once", "max_tokens": 30, "temperature": 0, "response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"schema": schema}}})
	if json.Unmarshal([]byte(cr.Choices[0].Text), &got) != nil {
		t.Errorf("completions json_schema: %q", cr.Choices[0].Text)
	}
	plain := ts.complete(t, map[string]any{"prompt": "Once", "max_tokens": 8, "temperature": 0})
	if got := ts.complete(t, map[string]any{"prompt": "Once", "max_tokens": 8, "temperature": 0, "response_format": map[string]any{"type": "text"}}); got != plain {
		t.Errorf("type text: %q, plain %q", got, plain)
	}
}

// chatLogprobEvents reads a streamed chat answer's logprobs entries.
func chatStreamLogprobs(t *testing.T, ts *testServer, req map[string]any) ([]chatTokenLogprob, string) {
	t.Helper()
	req["stream"] = true
	r, b := ts.post(t, "/v1/chat/completions", "", req)
	if r.StatusCode != 200 {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	var all []chatTokenLogprob
	var text strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		js, ok := strings.CutPrefix(line, "data: ")
		if !ok || js == "[DONE]" {
			continue
		}
		var ev chatResponse
		if err := json.Unmarshal([]byte(js), &ev); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		for _, c := range ev.Choices {
			if c.Delta != nil && c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
			if c.Logprobs != nil {
				all = append(all, c.Logprobs.Content...)
			}
		}
	}
	return all, text.String()
}

// logprobs: chat's content list (token, logprob, bytes, top_logprobs) and
// completions' legacy object, whole and streamed, for every generated
// token; through the official client too.
func TestLogprobs(t *testing.T) {
	ts := startServer(t, 1, "")
	msgs := []map[string]string{{"role": "user", "content": "Tell me a story."}}
	req := map[string]any{"messages": msgs, "max_tokens": 12, "temperature": 0, "logprobs": true, "top_logprobs": 3, "user": "tom"}
	r, b := ts.post(t, "/v1/chat/completions", "", req)
	var cr chatResponse
	if r.StatusCode != 200 || json.Unmarshal(b, &cr) != nil || cr.Choices[0].Logprobs == nil {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	content := cr.Choices[0].Logprobs.Content
	var joined strings.Builder
	for i, e := range content {
		joined.WriteString(e.Token)
		if e.Logprob > 0 || len(e.TopLogprobs) != 3 || string(intsToBytes(e.Bytes)) != e.Token {
			t.Fatalf("entry %d: %+v", i, e)
		}
		// Greedy: the token is the most likely one.
		if e.TopLogprobs[0].Token != e.Token || e.TopLogprobs[0].Logprob != e.Logprob ||
			!slices.IsSortedFunc(e.TopLogprobs, func(a, b chatTopLogprob) int { return -cmpFloat(a.Logprob, b.Logprob) }) {
			t.Fatalf("entry %d: top %+v", i, e.TopLogprobs)
		}
	}
	if len(content) != cr.Usage.CompletionTokens || joined.String() != cr.Choices[0].Message.Content {
		t.Fatalf("%d entries for %d tokens; tokens %q, text %q", len(content), cr.Usage.CompletionTokens, joined.String(), cr.Choices[0].Message.Content)
	}
	streamed, text := chatStreamLogprobs(t, ts, req)
	if text != cr.Choices[0].Message.Content || fmt.Sprint(streamed) != fmt.Sprint(content) {
		t.Errorf("streamed logprobs differ:\n%v\n%v", streamed, content)
	}
	// Without logprobs there are none.
	delete(req, "logprobs")
	delete(req, "top_logprobs")
	req["stream"] = false
	if _, b := ts.post(t, "/v1/chat/completions", "", req); !strings.Contains(string(b), `"logprobs":null`) {
		t.Errorf("logprobs without asking: %s", b)
	}

	// Legacy completions: tokens, token_logprobs, top_logprobs, text_offset.
	comp := ts.completion(t, map[string]any{"prompt": "Once upon a time", "max_tokens": 10, "temperature": 0, "logprobs": 2})
	lp := comp.Choices[0].Logprobs
	if lp == nil || len(lp.Tokens) != 10 || len(lp.TokenLogprobs) != 10 || len(lp.TopLogprobs) != 10 || len(lp.TextOffset) != 10 {
		t.Fatalf("completion logprobs: %+v", lp)
	}
	off := 0
	for i, tok := range lp.Tokens {
		if lp.TextOffset[i] != off || len(lp.TopLogprobs[i]) > 2 || lp.TopLogprobs[i][tok] != lp.TokenLogprobs[i] {
			t.Fatalf("token %d %q: offset %d (want %d), top %v, logprob %v", i, tok, lp.TextOffset[i], off, lp.TopLogprobs[i], lp.TokenLogprobs[i])
		}
		off += len(tok)
	}
	if strings.Join(lp.Tokens, "") != comp.Choices[0].Text {
		t.Errorf("tokens %q, text %q", lp.Tokens, comp.Choices[0].Text)
	}

	// A stop string cuts the tokens after it; those up to it stay.
	stopped := ts.completion(t, map[string]any{"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0, "logprobs": 1, "stop": "girl"})
	joinedStop := strings.Join(stopped.Choices[0].Logprobs.Tokens, "")
	if *stopped.Choices[0].FinishReason != "stop" || !strings.HasPrefix(joinedStop, stopped.Choices[0].Text) || strings.Contains(joinedStop, "girl named") {
		t.Errorf("with a stop string: tokens %q, text %q", stopped.Choices[0].Logprobs.Tokens, stopped.Choices[0].Text)
	}

	// The official client reads them.
	client := openai.NewClient(option.WithBaseURL(ts.url+"/v1/"), option.WithMaxRetries(0))
	res, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "pplug", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story.")},
		MaxTokens: openai.Int(12), Temperature: openai.Float(0), User: openai.String("tom"),
		Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Choices[0].Logprobs.Content
	if len(got) != len(content) || got[0].Token != content[0].Token || float32(got[0].Logprob) != float32(content[0].Logprob) || len(got[0].TopLogprobs) != 3 {
		t.Errorf("client logprobs %+v, want %+v", got, content)
	}
}

func intsToBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
