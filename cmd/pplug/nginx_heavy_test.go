//go:build heavy

package main

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startNginx runs nginx with examples/nginx/pplug.conf, its two upstream
// replicas and its listening address replaced, and returns its URL. It
// skips without nginx, or fails when $PPLUG_REQUIRE_POSTGRES=1 (make
// test; scripts/install-deps.sh installs nginx-light).
func startNginx(t *testing.T, replicaA, replicaB string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		msg := "nginx is not installed: install Debian's nginx-light (scripts/install-deps.sh does)"
		if os.Getenv("PPLUG_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	conf, err := os.ReadFile(filepath.Join("..", "..", "examples", "nginx", "pplug.conf"))
	if err != nil {
		t.Fatal(err)
	}
	listen := freeLoopback(t)
	site := strings.NewReplacer("127.0.0.1:8081", hostPort(t, replicaA), "127.0.0.1:8082", hostPort(t, replicaB),
		"127.0.0.1:8080", listen).Replace(string(conf))
	dir, err := os.MkdirTemp("", "pplug-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "pplug.conf"), []byte(site), 0o644)
	main := "pid nginx.pid;\nerror_log error.log;\nevents {}\nhttp {\n  access_log off;\n" +
		"  client_body_temp_path body; proxy_temp_path proxy;\n  include pplug.conf;\n}\n"
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644)
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGQUIT); cmd.Wait() })
	base := "http://" + listen
	if !waitUntil(heavyWait, func() bool {
		r, err := http.Get(base + "/health")
		return err == nil && r.Body.Close() == nil && r.StatusCode == 200
	}) {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx does not answer on %s: %s %s", listen, out.String(), log)
	}
	return base
}

func freeLoopback(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func hostPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// The deployment of docs/serving.md: nginx with examples/nginx/pplug.conf
// in front of two replicas on one PostgreSQL database. A user created and
// given items through nginx is answered alike by every request, whichever
// replica takes it, and after kill -9 of one replica nginx sends every
// request to the other.
func TestNginxInFrontOfReplicas(t *testing.T) {
	a, b, killA := startReplicaPair(t)
	lb := startNginx(t, a, b)
	if st, body := httpJSON(t, "POST", lb+"/v1/users", map[string]any{"id": "lily"}); st != 201 {
		t.Fatalf("create through nginx: %d %s", st, body)
	}
	if st, body := httpJSON(t, "POST", lb+"/v1/users/lily/items", map[string]string{"text": "Lily loved her dog Max."}); st != 201 {
		t.Fatalf("an item through nginx: %d %s", st, body)
	}
	first := askReplica(t, lb, "lily")
	for range 5 {
		if got := askReplica(t, lb, "lily"); got != first {
			t.Fatalf("answers through nginx differ:\n%+v\n%+v", first, got)
		}
	}
	killA()
	time.Sleep(100 * time.Millisecond)
	for range 4 {
		if got := askReplica(t, lb, "lily"); got != first {
			t.Fatalf("after kill -9 of a replica: %+v", got)
		}
	}
}
