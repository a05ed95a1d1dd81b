package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/pplug/pplug/persona/store"
)

// This file maps a profile database that cannot be reached (a PostgreSQL
// server down or restarting; store.ErrUnavailable) to 503 with
// Retry-After: the request may succeed on the next try, on this replica
// (its pool reconnects) or another. Any other database failure is a 500.

// retryAfter is the Retry-After of a 503 for an unreachable database, in
// seconds.
const retryAfter = 2

// databaseError is the answer to a failed profile database call made for
// what ("profile database", "persona").
func databaseError(what string, err error) *apiError {
	if errors.Is(err, store.ErrUnavailable) {
		e := errf(http.StatusServiceUnavailable, "server_error", "database_unavailable",
			"%s: %v (retry later)", what, err)
		e.retryAfter = retryAfter
		return e
	}
	return errf(http.StatusInternalServerError, "server_error", "", "%s: %v", what, err)
}

// setRetryAfter sets the header of an error that carries one.
func setRetryAfter(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
}
