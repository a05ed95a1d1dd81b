package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// getAs sends a GET with the given Authorization header ("" sends none).
func (ts *testServer) getAs(t *testing.T, path, auth string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.url+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// errorCode is the code of an OpenAI-shaped error body ("" when none).
func errorCode(body []byte) string {
	var e struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Code == nil {
		return ""
	}
	return *e.Error.Code
}

// errorParam is the param of an OpenAI-shaped error body ("" when none).
func errorParam(body []byte) string {
	var e struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Param == nil {
		return ""
	}
	return *e.Error.Param
}

// TestGivenKeysMustBeRight: a key that is sent is checked, with or without
// the server's own key: a user key that names no user, or an Authorization
// header that is not a Bearer key, is refused instead of falling back to
// the operator's rights.
func TestGivenKeysMustBeRight(t *testing.T) {
	for _, apiKey := range []string{"", "admin-key"} {
		ts := startServer(t, 1, apiKey)
		for _, tc := range []struct {
			name, auth string
			status     int
		}{
			{"wrong user key", "Bearer pk-wrong", 401},
			{"a user key of no user", "Bearer " + strings.Replace(ts.keys["tom"], "pk-", "pk-0", 1), 401},
			{"the user's own key", "Bearer " + ts.keys["tom"], 200},
			{"the user's own key, scheme in lower case", "bearer " + ts.keys["tom"], 200},
			{"another user's key", "Bearer " + ts.keys["lily"], 404},
			{"another user's key, scheme in lower case", "bearer " + ts.keys["lily"], 404},
			{"not a bearer key", "Basic dG9tOnNlY3JldA==", 401},
			{"bearer without a key", "Bearer ", 401},
		} {
			r, b := ts.getAs(t, "/v1/users/tom/items", tc.auth)
			if r.StatusCode != tc.status {
				t.Errorf("--api-key %q, %s: status %d, want %d: %s", apiKey, tc.name, r.StatusCode, tc.status, b)
				continue
			}
			if tc.status == 401 && (errorCode(b) != "invalid_api_key" || r.Header.Get("WWW-Authenticate") == "") {
				t.Errorf("--api-key %q, %s: %s (%q)", apiKey, tc.name, b, r.Header.Get("WWW-Authenticate"))
			}
		}
		// No key at all is the operator only when the server has no key;
		// a placeholder key (OpenAI's SDKs insist on one) likewise.
		want := map[string]int{"": 200, "admin-key": 401}[apiKey]
		if r, b := ts.getAs(t, "/v1/users/tom/items", ""); r.StatusCode != want {
			t.Errorf("--api-key %q, no key: status %d, want %d: %s", apiKey, r.StatusCode, want, b)
		}
		if r, b := ts.getAs(t, "/v1/users/tom/items", "Bearer sk-no-key-required"); r.StatusCode != want {
			t.Errorf("--api-key %q, placeholder key: status %d, want %d: %s", apiKey, r.StatusCode, want, b)
		}
	}
}
