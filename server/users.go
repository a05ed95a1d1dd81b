package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/persona/store"
)

// This file holds the routes of users and their history items, and the
// checks of a chat request's "remember". Item ids follow the rule of
// persona/store: an id names one item of a user; POST refuses an id the
// user has (409) and PUT /v1/users/{id}/items/{item} replaces or creates
// that one item. Ids and texts are bounded as profile files' are.

func (s *Server) userRoutes(mux *http.ServeMux) {
	mux.Handle("POST /v1/users", s.authed(s.createUser))
	mux.Handle("GET /v1/users/{id}", s.authed(s.getUser))
	mux.Handle("DELETE /v1/users/{id}", s.authed(s.deleteUser))
	mux.Handle("POST /v1/users/{id}/items", s.authed(s.addItems))
	mux.Handle("GET /v1/users/{id}/items", s.authed(s.listItems))
	mux.Handle("PUT /v1/users/{id}/items/{item}", s.authed(s.putItem))
	mux.Handle("DELETE /v1/users/{id}/items/{item}", s.authed(s.deleteItem))
}

// storeError maps a store error to its status and OpenAI-style body.
func storeError(err error) *apiError {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errf(http.StatusNotFound, "invalid_request_error", "not_found", "%v", err)
	case errors.Is(err, store.ErrItemExists):
		return errf(http.StatusConflict, "invalid_request_error", "item_exists",
			"%v: an id names one item; PUT /v1/users/{id}/items/{item} replaces it, DELETE removes it", err)
	case errors.Is(err, store.ErrExists):
		return errf(http.StatusConflict, "invalid_request_error", "conflict", "%v", err)
	case errors.Is(err, store.ErrItemTooLarge):
		return errf(http.StatusRequestEntityTooLarge, "invalid_request_error", "item_too_large", "%v", err)
	case errors.Is(err, store.ErrBadUserID), errors.Is(err, profile.ErrBadID),
		errors.Is(err, profile.ErrDuplicateID), errors.Is(err, store.ErrEmptyText), errors.Is(err, store.ErrBadDate):
		return badRequest("", "%v", err)
	}
	return databaseError("profile database", err)
}

// userFor checks the path's user id and that the caller may touch that
// user. Another user's data looks absent rather than forbidden.
func userFor(r *http.Request, c caller) (string, *apiError) {
	id := r.PathValue("id")
	if !store.ValidUserID(id) {
		return "", badRequest("", "user %s: %v", profile.QuoteID(id), store.ErrBadUserID)
	}
	if !c.mayAccess(id) {
		return "", errf(http.StatusNotFound, "invalid_request_error", "not_found", "user %s: not found", profile.QuoteID(id))
	}
	return id, nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	if !c.admin {
		return errf(http.StatusForbidden, "invalid_request_error", "permission_denied", "only the server's API key may create users")
	}
	var req struct {
		ID string `json:"id"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if !store.ValidUserID(req.ID) {
		return withParam(badRequest("", "id %s: %v", profile.QuoteID(req.ID), store.ErrBadUserID), "id")
	}
	key := store.NewKey()
	u, err := s.cfg.Store.CreateUser(r.Context(), req.ID, key)
	if err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": u.ID, "object": "user", "created": u.Created, "key": key})
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	u, err := s.cfg.Store.User(r.Context(), id)
	if err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "object": "user", "created": u.Created, "items": u.Items})
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	if err := s.cfg.Store.DeleteUser(r.Context(), id); err != nil {
		return storeError(err)
	}
	s.pers.forget(id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "user", "deleted": true})
	return nil
}

// addItems adds a batch ({"items": [...]}) or one item ({"text": ...}).
func (s *Server) addItems(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Items []store.NewItem `json:"items"`
		store.NewItem
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	items := req.Items
	if req.Text != "" {
		items = append(items, req.NewItem)
	}
	if len(items) == 0 {
		return withParam(badRequest("", `give {"items": [{"text": ...}, ...]} or one {"text": ...}`), "items")
	}
	if aerr := checkNewItems(items); aerr != nil {
		return aerr
	}
	added, err := s.cfg.Store.AddItems(r.Context(), id, items)
	if err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"object": "list", "data": added})
	return nil
}

// putItem replaces the path's item, or creates it: the explicit upsert.
func (s *Server) putItem(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	itemID := r.PathValue("item")
	if err := profile.CheckID(itemID); err != nil {
		return badRequest("", "%v", err)
	}
	var it store.NewItem
	if err := decode(r, &it); err != nil {
		return err
	}
	if it.ID != "" && it.ID != itemID {
		return withParam(badRequest("", "the body's id %s is not the path's %s", profile.QuoteID(it.ID), profile.QuoteID(itemID)), "id")
	}
	it.ID = itemID
	items := []store.NewItem{it}
	if aerr := checkNewItems(items); aerr != nil {
		return aerr
	}
	put, err := s.cfg.Store.UpsertItems(r.Context(), id, items)
	if err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusOK, put[0])
	return nil
}

// checkNewItems applies the store's item rules and normalises dates (RFC
// 3339 or YYYY-MM-DD) before any write.
func checkNewItems(items []store.NewItem) *apiError {
	if err := store.CheckItems(items); err != nil {
		return withParam(storeError(err), "items")
	}
	for i, it := range items {
		if it.Date == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339, it.Date); err == nil {
			continue
		}
		if _, err := time.Parse("2006-01-02", it.Date); err != nil {
			return withParam(badRequest("", "items[%d]: date %s is not RFC 3339 or YYYY-MM-DD", i, profile.QuoteID(it.Date)), "items")
		}
		items[i].Date += "T00:00:00Z"
	}
	return nil
}

func (s *Server) listItems(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	items, err := s.cfg.Store.Items(r.Context(), id)
	if err != nil {
		return storeError(err)
	}
	if items == nil {
		items = []store.Item{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": items})
	return nil
}

func (s *Server) deleteItem(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	id, aerr := userFor(r, c)
	if aerr != nil {
		return aerr
	}
	item := r.PathValue("item")
	if err := profile.CheckID(item); err != nil {
		return badRequest("", "%v", err)
	}
	if err := s.cfg.Store.DeleteItem(r.Context(), id, item); err != nil {
		return storeError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": item, "object": "item", "deleted": true})
	return nil
}

// checkRemember refuses, before anything is generated, a chat request
// whose "remember" could store nothing: no user field, an unknown user, no
// user message, or one over the item limit. A user's key naming another
// user is left to prepare (403).
func (s *Server) checkRemember(ctx context.Context, c caller, req *chatRequest, message string) *apiError {
	if !req.Remember {
		return nil
	}
	if req.User == "" {
		return withParam(badRequest("", `"remember": true needs the "user" field: the user whose history the message joins`), "user")
	}
	if !c.mayAccess(req.User) {
		return nil
	}
	if _, err := s.cfg.Store.User(ctx, req.User); err != nil {
		aerr := storeError(err)
		if errors.Is(err, store.ErrNotFound) {
			aerr.Message += `: "remember": true stores the message in an existing user's history; create the user with POST /v1/users first`
		}
		return withParam(aerr, "user")
	}
	if aerr := checkNewItems([]store.NewItem{{Text: message}}); aerr != nil {
		aerr.Message = `"remember": true stores the last user message as an item: ` + aerr.Message
		return withParam(aerr, "messages")
	}
	return nil
}

// remember appends a chat message to the user's history (after the
// answer; a failure is logged, the answer is already sent).
func (s *Server) remember(ctx context.Context, user, message string) {
	item := store.NewItem{Text: message, Date: time.Now().UTC().Format(time.RFC3339)}
	if _, err := s.cfg.Store.AddItems(context.WithoutCancel(ctx), user, []store.NewItem{item}); err != nil {
		s.log.Warn("could not remember the message", "user", user, "err", err)
	}
}
