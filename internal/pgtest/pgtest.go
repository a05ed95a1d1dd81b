// Package pgtest starts a real PostgreSQL server for tests: Debian's
// binaries (/usr/lib/postgresql/N/bin, or initdb on PATH), a data folder
// in a temporary folder, a unix socket there and a loopback TCP port.
// When running as root the server runs as the postgres user (initdb
// refuses root). Without the binaries a test skips, or fails when
// $PPLUG_REQUIRE_POSTGRES=1 (make test sets it: CI must run these tests).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running test PostgreSQL server.
type Server struct {
	t    testing.TB
	bin  string // the folder of initdb and postgres
	dir  string // data, socket and log
	port int
	cred *syscall.Credential // nil: run as ourselves
	cmd  *exec.Cmd
	done chan error
	n    int // databases made
}

// Start initialises a data folder and starts a server, stopped and
// removed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := create(t)
	t.Cleanup(s.remove)
	s.Restart()
	return s
}

var shared struct {
	mu sync.Mutex
	s  *Server
}

// Shared is one server for the tests of a package, started by the first
// that asks; the package's TestMain calls StopShared after m.Run.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil {
		s := create(t)
		s.Restart()
		shared.s = s
	}
	shared.s.t = t
	return shared.s
}

// StopShared stops and removes the shared server, if one was started.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s != nil {
		shared.s.remove()
		shared.s = nil
	}
}

// create makes the data folder.
func create(t testing.TB) *Server {
	bin := findBin(t)
	dir, err := os.MkdirTemp("", "pplug-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: dir, port: freePort(t)}
	s.setUser()
	s.initdb()
	return s
}

// remove stops the server and deletes its folder.
func (s *Server) remove() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// findBin is the newest /usr/lib/postgresql/N/bin with initdb, or the
// folder of initdb on PATH; it skips or fails the test when there is none.
func findBin(t testing.TB) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if len(dirs) > 0 {
		return filepath.Dir(dirs[0])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	msg := "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install Debian's postgresql package (scripts/install-deps.sh does)"
	if os.Getenv("PPLUG_REQUIRE_POSTGRES") == "1" {
		t.Fatal(msg + "; PPLUG_REQUIRE_POSTGRES=1 requires it")
	}
	t.Skip(msg)
	return ""
}

func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// setUser makes the server run as postgres when we are root, and hands it
// the folder.
func (s *Server) setUser() {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		s.t.Fatalf("running as root, PostgreSQL must run as another user and there is no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chown(s.dir, uid, gid); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	// A test binary that dies takes its server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGTERM}
	cmd.Dir = s.dir
	return cmd
}

func (s *Server) initdb() {
	out, err := s.command("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions").CombinedOutput()
	if err != nil {
		os.RemoveAll(s.dir)
		s.t.Fatalf("initdb: %v\n%s", err, out)
	}
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Restart starts the server (after Stop) and waits until it accepts
// connections.
func (s *Server) Restart() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	s.cmd = s.command("postgres", "-D", s.data(), "-k", s.dir, "-p", strconv.Itoa(s.port), "-h", "127.0.0.1",
		"-c", "max_connections=200")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start postgres: %v", err)
	}
	s.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(s.cmd, s.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
		if err == nil {
			conn.Close(context.Background())
			return
		}
		select {
		case err := <-s.done:
			s.cmd = nil
			s.t.Fatalf("postgres exited (%v); its log:\n%s", err, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres did not accept connections within 60 s: %v; its log:\n%s", err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (fast shutdown: sessions are ended, the
// data is flushed) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Log is the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// URL is the address of a database of the server over TCP.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase() string {
	s.t.Helper()
	s.n++
	name := fmt.Sprintf("pplug_test_%d", s.n)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		s.t.Fatal(err)
	}
	return s.URL(name)
}
