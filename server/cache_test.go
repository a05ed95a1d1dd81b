package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/persona"
)

// turnUsage is the usage of one answer.
type turnUsage struct {
	PromptTokens  int `json:"prompt_tokens"`
	PromptDetails struct {
		CachedTokens *int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func (u turnUsage) cached(t *testing.T) int {
	t.Helper()
	if u.PromptDetails.CachedTokens == nil {
		t.Fatal("the usage has no prompt_tokens_details.cached_tokens")
	}
	return *u.PromptDetails.CachedTokens
}

// chatTurn asks for a greedy answer to a conversation (msgs: user,
// assistant, user, ...) for user and returns its text and usage.
func (ts *testServer) chatTurn(t *testing.T, user string, msgs []string, reuse bool) (string, turnUsage) {
	t.Helper()
	resp, body := ts.post(t, "/v1/chat/completions", "", turnRequest(user, msgs, reuse))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var cr struct {
		Choices []struct {
			Message outMessage `json:"message"`
		} `json:"choices"`
		Usage turnUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &cr); err != nil || len(cr.Choices) != 1 {
		t.Fatalf("bad response %s: %v", body, err)
	}
	return cr.Choices[0].Message.Content, cr.Usage
}

func turnRequest(user string, msgs []string, reuse bool) map[string]any {
	var ms []map[string]string
	for i, m := range msgs {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		ms = append(ms, map[string]string{"role": role, "content": m})
	}
	return map[string]any{"messages": ms, "user": user, "max_tokens": 12, "temperature": 0, "cache_prompt": reuse}
}

// streamTurn is chatTurn streamed, with the usage event.
func (ts *testServer) streamTurn(t *testing.T, user string, msgs []string) (string, turnUsage) {
	t.Helper()
	req := turnRequest(user, msgs, true)
	req["stream"], req["stream_options"] = true, map[string]any{"include_usage": true}
	js, _ := json.Marshal(req)
	resp, err := http.Post(ts.url+"/v1/chat/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	var u *turnUsage
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *turnUsage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("bad event %q: %v", line, err)
		}
		for _, c := range ev.Choices {
			text.WriteString(c.Delta.Content)
		}
		if ev.Usage != nil {
			u = ev.Usage
		}
	}
	if u == nil {
		t.Fatal("the stream sent no usage")
	}
	return text.String(), *u
}

func withCacheSlots(n int) func(*Config) { return func(c *Config) { c.CacheSlots = n } }

// The next turn of a conversation decodes only what follows the prefix a
// slot kept, and answers as it does when the whole prompt is decoded.
func TestNextTurnReusesThePrefix(t *testing.T) {
	ts := startServerWith(t, 1, "", withCacheSlots(2))
	conv := []string{"Tell me a story about a cat."}
	a1, u1 := ts.chatTurn(t, "lily", conv, true)
	if c := u1.cached(t); c != 0 {
		t.Fatalf("turn 1 of a new server reused %d positions", c)
	}
	conv = append(conv, a1, "What did the cat do next?")
	a2, u2 := ts.chatTurn(t, "lily", conv, true)
	if c := u2.cached(t); c <= u1.PromptTokens/2 || c >= u2.PromptTokens {
		t.Fatalf("turn 2 reused %d of %d positions; turn 1 had %d", c, u2.PromptTokens, u1.PromptTokens)
	}
	fresh, uf := ts.chatTurn(t, "lily", conv, false)
	if uf.cached(t) != 0 || fresh != a2 {
		t.Fatalf("cache_prompt false: %q (cached %d), with reuse %q", fresh, uf.cached(t), a2)
	}
	conv = append(conv, a2, "And then?")
	a3, u3 := ts.streamTurn(t, "lily", conv)
	if c := u3.cached(t); c <= u2.PromptTokens/2 {
		t.Fatalf("streamed turn 3 reused %d positions; turn 2 had %d", c, u2.PromptTokens)
	}
	if fresh, _ := ts.chatTurn(t, "lily", conv, false); fresh != a3 {
		t.Fatalf("streamed turn 3 with reuse %q, without %q", a3, fresh)
	}
	t.Logf("cached positions: turn 1 %d/%d, turn 2 %d/%d, turn 3 %d/%d", u1.cached(t), u1.PromptTokens,
		u2.cached(t), u2.PromptTokens, u3.cached(t), u3.PromptTokens)
}

// shared is what every prompt with rows starts with: BOS and the plug's
// instruction rows (the same for every user).
func (ts *testServer) shared() int { return 1 + ts.pz.Plug.NInstr }

// A prefix is shared only where the tokens and the persona rows are the
// same: another user's conversation, or the same user with a changed
// history, reuses nothing past BOS and the instruction rows.
func TestPrefixNeverCrossesPersonas(t *testing.T) {
	ts := startServerWith(t, 1, "", withCacheSlots(1))
	conv := []string{"Tell me a story about a cat."}
	ts.chatTurn(t, "lily", conv, true)
	ts.chatTurn(t, "sue", conv, true)           // both slots hold a conversation now
	got, u := ts.chatTurn(t, "tom", conv, true) // same text, tom's rows
	want, _ := ts.chatTurn(t, "tom", conv, false)
	if c := u.cached(t); c > ts.shared() || got != want {
		t.Fatalf("tom reused %d positions of another user's prefix (%q, alone %q)", c, got, want)
	}
	if code, e, _ := ts.do(t, http.MethodPost, "/v1/users/tom/items", map[string]any{"text": "Tom rode a red bike."}); code != http.StatusCreated {
		t.Fatalf("add an item: %d %+v", code, e)
	}
	got, u = ts.chatTurn(t, "tom", conv, true)
	want, _ = ts.chatTurn(t, "tom", conv, false)
	if c := u.cached(t); c > ts.shared() || got != want {
		t.Fatalf("tom's new persona reused %d positions of the old one (%q, alone %q)", c, got, want)
	}
}

// A short first turn whose next turn is more than twice as long still goes
// to its slot, not to an empty one: the slot's whole prompt is the start
// of the next.
func TestShortTurnKeepsItsSlot(t *testing.T) {
	ts := startServerWith(t, 1, "", withCacheSlots(2))
	conv := []string{"Hi."}
	a, u1 := ts.chatTurn(t, "lily", conv, true)
	conv = append(conv, a+strings.Repeat(" The cat sat on the mat.", 12), "Go on.")
	_, u2 := ts.chatTurn(t, "lily", conv, true)
	if c := u2.cached(t); 2*c >= u2.PromptTokens || c < u1.PromptTokens {
		t.Fatalf("turn 2 (%d positions) reused %d; turn 1 had %d: the test wants a turn 2 more than twice as long, reusing turn 1", u2.PromptTokens, c, u1.PromptTokens)
	}
}

// With every slot holding a conversation, a new one takes the least
// recently used slot: that conversation's next turn starts over, the
// others keep their prefix.
func TestLeastRecentlyUsedPrefixIsEvicted(t *testing.T) {
	ts := startServerWith(t, 1, "", withCacheSlots(1))
	convs := map[string][]string{}
	for _, u := range []string{"lily", "sue", "tom"} {
		convs[u] = []string{"Tell me a story, " + u + "."}
		a, _ := ts.chatTurn(t, u, convs[u], true)
		convs[u] = append(convs[u], a, "Go on.")
	}
	if _, u := ts.chatTurn(t, "tom", convs["tom"], true); u.cached(t) <= ts.shared() {
		t.Fatalf("the newest conversation lost its prefix (cached %d)", u.cached(t))
	}
	if _, u := ts.chatTurn(t, "lily", convs["lily"], true); u.cached(t) > ts.shared() {
		t.Fatalf("the least recently used conversation kept %d positions with 2 slots for 3 conversations", u.cached(t))
	}
}

// The KV cache bounds what idle slots keep: a request that needs the room
// evicts them, least recently used first.
func TestKeptPrefixesYieldToTheKVBudget(t *testing.T) {
	ts := startServerWith(t, 1, "", func(c *Config) { c.CacheSlots = 2; c.Context.NCtx = 256 })
	long := strings.Repeat("The cat sat on the mat and looked at the sun. ", 6)
	a, u1 := ts.chatTurn(t, "lily", []string{long}, true)
	if u1.PromptTokens+12 > 256 || 2*(u1.PromptTokens+12) <= 256 {
		t.Fatalf("the test needs a prompt of 64 to 122 positions, got %d", u1.PromptTokens)
	}
	ts.chatTurn(t, "sue", []string{long}, true) // needs lily's room
	if _, u := ts.chatTurn(t, "lily", []string{long, a, "Go on."}, true); u.cached(t) > ts.shared() {
		t.Fatalf("lily's prefix survived past the KV budget (cached %d)", u.cached(t))
	}
}

// The turns of a conversation are personalised by its first message once
// per revision of the user's items: the same request (rows included) each
// turn, made again after the history changes.
func TestOpeningIsPersonalisedOnce(t *testing.T) {
	ts := startServerWith(t, 1, "", withCacheSlots(1))
	var rows [][]float32
	ts.srv.pers.seen = func(_ string, r persona.Request) { rows = append(rows, r.Rows) }
	conv := []string{"Tell me a story about a cat."}
	a, _ := ts.chatTurn(t, "lily", conv, true)
	conv = append(conv, a, "Go on.")
	ts.chatTurn(t, "lily", conv, true)
	if h := ts.srv.pers.made.hits; h != 1 || len(rows) != 2 || !slices.Equal(rows[0], rows[1]) {
		t.Fatalf("%d reuses of a made request over 2 turns; rows equal: %v", h, len(rows) == 2 && slices.Equal(rows[0], rows[1]))
	}
	if code, e, _ := ts.do(t, http.MethodPost, "/v1/users/lily/items", map[string]any{"text": "Lily rode a red bike."}); code != http.StatusCreated {
		t.Fatalf("add an item: %d %+v", code, e)
	}
	ts.chatTurn(t, "lily", conv, true)
	if h := ts.srv.pers.made.hits; h != 1 || slices.Equal(rows[1], rows[2]) {
		t.Fatalf("a changed history reused the old request (%d reuses, same rows %v)", h, slices.Equal(rows[1], rows[2]))
	}
}
