package server

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/pplug/pplug/persona/store"
)

// userKeyPrefix starts every user key store.NewKey makes.
const userKeyPrefix = "pk-"

// CheckAPIKey checks a server API key (Config.APIKey, --api-key): a key
// that is set must be a token a client can send, so not blank and without
// white space, which the server trims from what clients send.
func CheckAPIKey(key string) error {
	switch {
	case key == "":
		return nil
	case strings.TrimSpace(key) == "":
		return errors.New("the API key is blank: give a key of visible characters, or none to serve loopback clients without one")
	case strings.ContainsFunc(key, unicode.IsSpace):
		return errors.New("the API key holds white space, which no client can send in Authorization: Bearer KEY: give a key without it")
	}
	return nil
}

// bearerKey reads the Authorization header: given reports whether there
// is one; a header that is not "Bearer KEY" (the scheme in any case, as
// RFC 9110 says) is an error rather than no key.
func bearerKey(r *http.Request) (key string, given bool, aerr *apiError) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return "", false, nil
	}
	scheme, key, _ := strings.Cut(h, " ")
	key = strings.TrimSpace(key)
	if !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", true, unauthorized("the Authorization header is not a Bearer key: send Authorization: Bearer KEY")
	}
	return key, true, nil
}

func unauthorized(msg string) *apiError {
	return errf(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "%s", msg)
}

// authenticate says who sends a request. A key that is sent must be right:
// the server's key, or a user key (pk-...) of an existing user. Without a
// server key, a request without a key is the operator's (loopback only),
// and so is one with another key, since OpenAI's SDKs insist on sending a
// placeholder; a user key that names no user is refused either way.
func (s *Server) authenticate(r *http.Request) (caller, *apiError) {
	key, given, aerr := bearerKey(r)
	switch {
	case aerr != nil:
		return caller{}, aerr
	case !given && s.cfg.APIKey == "":
		return caller{admin: true}, nil
	case !given:
		return caller{}, unauthorized("this server needs an API key: send Authorization: Bearer KEY")
	case s.cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) == 1:
		return caller{admin: true}, nil
	case strings.HasPrefix(key, userKeyPrefix):
		return s.userByKey(r, key)
	case s.cfg.APIKey == "":
		return caller{admin: true}, nil
	}
	return caller{}, unauthorized("invalid API key: send Authorization: Bearer KEY with the server's --api-key or a user's own key")
}

// userByKey resolves a user key; one that names no user is refused.
func (s *Server) userByKey(r *http.Request, key string) (caller, *apiError) {
	id, err := s.cfg.Store.UserByKey(r.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return caller{}, unauthorized("this user key belongs to no user (mistyped, or the user was deleted): send the key POST /v1/users returned")
	case err != nil:
		return caller{}, databaseError("profile database", err)
	}
	return caller{user: id}, nil
}

// caller is who a request comes from: the operator (the server's API key,
// or anyone when none is set) or one user (by their own key).
type caller struct {
	admin bool
	user  string
}

func (c caller) mayAccess(user string) bool { return c.admin || c.user == user }

type handler func(w http.ResponseWriter, r *http.Request, c caller) *apiError

func (s *Server) authed(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		c, aerr := s.authenticate(r)
		if aerr == nil {
			aerr = h(w, r, c)
		}
		if aerr != nil {
			if aerr.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pplug"`)
			}
			writeError(w, aerr)
		}
	})
}
