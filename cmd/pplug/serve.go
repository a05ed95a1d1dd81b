package main

import (
	"errors"
	"fmt"
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
	return &cli.StringFlag{Name: "profiles", Usage: "profile database `FILE` (SQLite, WAL mode; default $PPLUG_PROFILES or <user data dir>/pplug/profiles.db)", EnvVars: []string{"PPLUG_PROFILES"}}
}

// profilesPath is --profiles or the default database, whose folder it creates.
func profilesPath(c *cli.Context) (string, error) {
	if p := c.String("profiles"); p != "" {
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
		&cli.StringFlag{Name: "device", Value: "auto", Usage: "where the plug-in's pooling runs: auto, cpu, cuda or metal"},
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

func runServe(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	stderr := c.App.ErrWriter
	host, port := c.String("host"), c.Int("port")
	if err := checkAPIKeyFlag(c); err != nil {
		return err
	}
	switch {
	case !isLoopback(host) && c.String("api-key") == "":
		return usagef("--host %s is reachable from other machines: give --api-key KEY (or bind to 127.0.0.1)", host)
	case port < 0 || port > 65535:
		return usagef("--port %d is outside 0..65535", port)
	case c.Int("parallel") < 1 || c.Int("parallel") > 256:
		return usagef("-np must be 1 to 256")
	case c.Int("n-predict") < 1:
		return usagef("-n must be positive (the most tokens one request may generate)")
	case c.Int64("max-body") < 1024:
		return usagef("--max-body must be at least 1024 bytes")
	case c.Int("queue") < 1:
		return usagef("--queue must be positive")
	case c.Int("cache-slots") < 0 || c.Int("parallel")+c.Int("cache-slots") > 256:
		return usagef("--cache-slots must be 0 to %d (-np plus --cache-slots is at most 256 sequences)", 256-c.Int("parallel"))
	case c.Int("retrieve-k") < 1 || c.Int("max-items") < 1:
		return usagef("--retrieve-k and --max-items must be positive")
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	copts.NSeqMax = c.Int("parallel")
	dbPath, err := profilesPath(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	// The database first: a bad --profiles fails before the model loads.
	st, err := store.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := loadModel(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	applyThreadDefault(c, m, &copts)

	cfg := server.Config{
		Model: m, Context: copts, APIKey: c.String("api-key"),
		MaxBodyBytes: c.Int64("max-body"), MaxTokens: c.Int("n-predict"), MaxQueue: c.Int("queue"),
		RetrieveK: c.Int("retrieve-k"), MaxItems: c.Int("max-items"), CacheSlots: c.Int("cache-slots"), Logger: slog.Default(),
	}
	cfg.ModelName = c.String("alias")
	if cfg.ModelName == "" {
		cfg.ModelName = strings.TrimSuffix(filepath.Base(c.String("model")), ".gguf")
	}
	if c.String("plug") != "" {
		pz, closeRT, err := openRuntime(ctx, c, m)
		if err != nil {
			return err
		}
		defer closeRT()
		optionalCache(pz.Cache)    // users' item embeddings, shared with the other commands
		pz.K = c.Int("retrieve-k") // bm25 and recent, when a request asks for them
		cfg.Personalizer = pz
	} else {
		enc, err := openEncoder(ctx, c, m, c.Int("threads"))
		if err != nil {
			return err
		}
		defer enc.Close()
		cfg.Encoder = enc
	}
	cfg.Store = st
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w (is another server using the port? pick one with --port)", host, port, err)
	}
	mode := string(srv.Method()) + " (no --plug)"
	if cfg.Personalizer != nil {
		mode = string(srv.Method()) + " with " + c.String("plug")
	}
	fmt.Fprintf(stderr, "pplug serve: %s on http://%s (model %q, %d sequences and %d cache slots over %d KV positions, personas: %s, profiles: %s)\n",
		"listening", ln.Addr(), cfg.ModelName, srv.NSeq(), srv.NCacheSlots(), srv.NCtx(), mode, dbPath)
	if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
