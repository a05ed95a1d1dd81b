package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/persona/store"
	"github.com/pplug/pplug/server"
)

// profilesFlag is the profile database flag of serve and profile import.
func profilesFlag() cli.Flag {
	return &cli.StringFlag{Name: "profiles", Usage: "profile database: a SQLite `FILE` (WAL mode; default $PPLUG_PROFILES or <user data dir>/pplug/profiles.db) or a PostgreSQL URL postgres://USER:PASSWORD@HOST:5432/DB, which several servers share (docs/serving.md)", EnvVars: []string{"PPLUG_PROFILES"}}
}

// profilesPath is --profiles or the default database, whose folder it
// creates. A PostgreSQL URL that does not parse is a usage error.
func profilesPath(c *cli.Context) (string, error) {
	if p := c.String("profiles"); store.IsURL(p) {
		if err := store.CheckURL(p); err != nil {
			return "", usagef("--profiles: %v", err)
		}
		return p, nil
	} else if p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", usagef("no home folder for the default profile database: give --profiles FILE")
		}
		dir = filepath.Join(home, ".local", "share")
	}
	dir = filepath.Join(dir, "pplug")
	// 0700, narrower than the umask's default: the database holds the
	// users' API keys.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the profile database folder: %w (give --profiles FILE)", err)
	}
	return filepath.Join(dir, "profiles.db"), nil
}

func serveCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to listen on (anything but loopback needs --api-key)"},
		&cli.IntFlag{Name: "port", Value: 8080, Usage: "port to listen on (0: any free port)"},
		&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: 4, Usage: "sequences decoded in parallel (more requests wait in a queue)"},
		&cli.StringFlag{Name: "api-key", Usage: "require Authorization: Bearer `KEY` (needed when --host is not loopback)", EnvVars: []string{"PPLUG_API_KEY"}},
		&cli.StringFlag{Name: "alias", Usage: "model name to serve as (default: the model file's name)"},
		&cli.IntFlag{Name: "n-predict", Aliases: []string{"n"}, Value: 1024, Usage: "most tokens one request may generate (max_tokens limit)"},
		&cli.Int64Flag{Name: "max-body", Value: 1 << 20, Usage: "largest request body in bytes"},
		&cli.IntFlag{Name: "queue", Value: 256, Usage: "requests that may wait for a free sequence (more get 429)"},
		&cli.IntFlag{Name: "cache-slots", Value: 4, Usage: "sequences beyond -np that keep ended conversations' KV, so that a next turn decodes only its new part (0: keep none; -c bounds them too)"},
		profilesFlag(),
		&cli.StringFlag{Name: "plug", Usage: "Persona-Plug plug-in `FILE`; without it users' personas work by retrieval (top history items in the prompt)"},
		&cli.StringFlag{Name: "encoder", Usage: "history encoder GGUF `FILE` (BERT/BGE family); default: the LLM itself, mean-pooled"},
		&cli.StringFlag{Name: "pooling", Value: "default", Usage: "encoder pooling: default, cls, mean or last"},
		&cli.IntFlag{Name: "encoder-max-tokens", Value: 512, Usage: "truncate each history item to this many tokens"},
		pluginDeviceFlag(),
		&cli.IntFlag{Name: "retrieve-k", Value: persona.DefaultTopK, Usage: "history items bm25 and recent put into the prompt (the default without --plug; pplug+bm25 takes the plug's own)"},
		&cli.IntFlag{Name: "max-items", Value: profile.DefaultMaxItems, Usage: "use a user's N most recent history items"},
		&cli.StringFlag{Name: "cache-dir", Usage: "embedding cache folder (default $PPLUG_CACHE_DIR or the user cache dir)", EnvVars: []string{"PPLUG_CACHE_DIR"}},
		&cli.BoolFlag{Name: "no-cache", Usage: "do not read or write the embedding cache"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	return &cli.Command{
		Name:  "serve",
		Usage: "serve an OpenAI-compatible HTTP API where each request's user gets their persona",
		UsageText: "pplug serve -m MODEL [--plug PLUG] [--encoder E] [--profiles DB] [--host 127.0.0.1] [--port 8080] [-np N] [-c CTX] [--api-key KEY]\n" +
			"   routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, POST /v1/embeddings, GET /health,\n" +
			"           POST /v1/users, GET|DELETE /v1/users/{id}, POST|GET /v1/users/{id}/items, DELETE /v1/users/{id}/items/{item}",
		Flags:  flags,
		Action: runServe,
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAPIKeyFlag refuses a --api-key (or PPLUG_API_KEY) that is set but
// empty, blank or holds white space: no client could send it, and an empty
// one would silently leave the server without a key.
func checkAPIKeyFlag(c *cli.Context) error {
	key := c.String("api-key")
	if c.IsSet("api-key") && key == "" {
		return usagef("--api-key (or PPLUG_API_KEY) is empty: give a key, or leave both out to serve loopback clients without one")
	}
	if err := server.CheckAPIKey(key); err != nil {
		return usagef("--api-key (or PPLUG_API_KEY): %v", err)
	}
	return nil
}

// serveConfig is what serve's flags say, read and checked once.
type serveConfig struct {
	Host    string
	Port    int
	DB      string // the profile database
	Model   modelConfig
	Persona personaOptions // the plug (or the encoder of retrieval) and its cache
	Server  server.Config  // without the model, store and personalisation
	// threadsSet: -t was given (no tiny-model default).
	threadsSet bool
}

func serveConfigFrom(c *cli.Context) (*serveConfig, error) {
	sc := &serveConfig{Host: c.String("host"), Port: c.Int("port"), threadsSet: c.IsSet("threads")}
	if err := checkAPIKeyFlag(c); err != nil {
		return nil, err
	}
	switch {
	case !isLoopback(sc.Host) && c.String("api-key") == "":
		return nil, usagef("--host %s is reachable from other machines: give --api-key KEY (or bind to 127.0.0.1)", sc.Host)
	case sc.Port < 0 || sc.Port > 65535:
		return nil, usagef("--port %d is outside 0..65535", sc.Port)
	case c.Int("parallel") < 1 || c.Int("parallel") > 256:
		return nil, usagef("-np must be 1 to 256")
	case c.Int("n-predict") < 1:
		return nil, usagef("-n must be positive (the most tokens one request may generate)")
	case c.Int64("max-body") < 1024:
		return nil, usagef("--max-body must be at least 1024 bytes")
	case c.Int("queue") < 1:
		return nil, usagef("--queue must be positive")
	case c.Int("cache-slots") < 0 || c.Int("parallel")+c.Int("cache-slots") > 256:
		return nil, usagef("--cache-slots must be 0 to %d (-np plus --cache-slots is at most 256 sequences)", 256-c.Int("parallel"))
	case c.Int("retrieve-k") < 1 || c.Int("max-items") < 1:
		return nil, usagef("--retrieve-k and --max-items must be positive")
	}
	copts, err := contextOptions(c)
	if err != nil {
		return nil, err
	}
	copts.NSeqMax = c.Int("parallel")
	sc.Server = server.Config{
		Context: copts, APIKey: c.String("api-key"), ModelName: c.String("alias"),
		MaxBodyBytes: c.Int64("max-body"), MaxTokens: c.Int("n-predict"), MaxQueue: c.Int("queue"),
		RetrieveK: c.Int("retrieve-k"), MaxItems: c.Int("max-items"), CacheSlots: c.Int("cache-slots"), Logger: slog.Default(),
	}
	if sc.DB, err = profilesPath(c); err != nil {
		return nil, err
	}
	if sc.Model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	if sc.Server.ModelName == "" {
		sc.Server.ModelName = strings.TrimSuffix(filepath.Base(sc.Model.Path), ".gguf")
	}
	if sc.Persona, err = personaOptionsFrom(c); err != nil {
		return nil, err
	}
	return sc, nil
}

func runServe(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	sc, err := serveConfigFrom(c)
	if err != nil {
		return err
	}
	return sc.run(c.Context, c.App.ErrWriter)
}

// run opens the database, the model and the personalisation, and serves
// until ctx ends.
func (sc *serveConfig) run(ctx context.Context, stderr io.Writer) error {
	// The database first: a bad --profiles fails before the model loads.
	st, err := store.Open(ctx, sc.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := sc.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	cfg := sc.Server
	cfg.Model, cfg.Store = m, st
	threadDefault(sc.threadsSet, m, &cfg.Context)
	if sc.Persona.Plug != "" {
		pz, closeRT, err := openRuntime(ctx, sc.Persona, m)
		if err != nil {
			return err
		}
		defer closeRT()
		optionalCache(pz.Cache)    // users' item embeddings, shared with the other commands
		pz.K = sc.Server.RetrieveK // bm25 and recent, when a request asks for them
		cfg.Personalizer = pz
	} else {
		enc, err := sc.Persona.Encoder.open(ctx, m, sc.Persona.Threads)
		if err != nil {
			return err
		}
		defer enc.Close()
		cfg.Encoder = enc
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort(sc.Host, strconv.Itoa(sc.Port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w (is another server using the port? pick one with --port)", sc.Host, sc.Port, err)
	}
	mode := string(srv.Method()) + " (no --plug)"
	if cfg.Personalizer != nil {
		mode = string(srv.Method()) + " with " + sc.Persona.Plug
	}
	fmt.Fprintf(stderr, "pplug serve: %s on http://%s (model %q, %d sequences and %d cache slots over %d KV positions, personas: %s, profiles: %s)\n",
		"listening", ln.Addr(), cfg.ModelName, srv.NSeq(), srv.NCacheSlots(), srv.NCtx(), mode, st.Path())
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
