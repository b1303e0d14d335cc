// Package pgtest gives tests a throwaway PostgreSQL: one cluster per test
// binary, started on first use from the locally installed server binaries,
// and a fresh database per test so tests can run in parallel.
//
// Use it from TestMain so the cluster stops even when tests fail:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and in a test:
//
//	url := pgtest.Start(t) // skips when PostgreSQL is not installed
//
// Environment: IPA_TEST_POSTGRES_URL uses an existing server instead;
// IPA_PG_BIN names the directory holding initdb and pg_ctl;
// IPA_REQUIRE_POSTGRES=1 turns a missing PostgreSQL into a failure.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// errMissing means no PostgreSQL binaries were found.
var errMissing = errors.New("pgtest: PostgreSQL binaries not found (set IPA_PG_BIN or install postgresql)")

var (
	once    sync.Once
	mu      sync.Mutex
	current *cluster
	baseURL string // admin URL of the server databases are created on
	initErr error
	dbSeq   atomic.Int64
)

// cluster is a PostgreSQL server this package started.
type cluster struct {
	bin  string // directory of initdb, pg_ctl
	dir  string // temp dir: data/, sock/, log
	user string // OS user the server runs as, "" for the current one
}

// Main runs the tests and stops the cluster before exiting, whatever the
// tests did.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Start returns the URL of a new, empty database for tb, dropped when tb
// ends. The cluster starts on the first call. When PostgreSQL is not
// available it skips tb, or fails it if IPA_REQUIRE_POSTGRES=1.
func Start(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { baseURL, initErr = setup() })
	if initErr != nil {
		if os.Getenv("IPA_REQUIRE_POSTGRES") == "1" || !errors.Is(initErr, errMissing) {
			tb.Fatalf("pgtest: %v", initErr)
		}
		tb.Skipf("pgtest: %v", initErr)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database: %v", err)
		}
	})
	u, _ := url.Parse(baseURL)
	u.Path = "/" + name
	return u.String()
}

// Stop stops the cluster if this package started one and removes its files.
// It is safe to call more than once and when nothing was started.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if current == nil {
		return
	}
	current.stop()
	current = nil
}

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// setup returns the admin URL: IPA_TEST_POSTGRES_URL, or a cluster it starts.
func setup() (string, error) {
	if u := os.Getenv("IPA_TEST_POSTGRES_URL"); u != "" {
		return u, nil
	}
	bin, err := findBin()
	if err != nil {
		return "", err
	}
	c := &cluster{bin: bin}
	port, err := c.start()
	if err != nil {
		c.stop()
		return "", err
	}
	mu.Lock()
	current = c
	mu.Unlock()
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
}

// findBin returns the directory holding initdb and pg_ctl: IPA_PG_BIN, or
// the newest /usr/lib/postgresql/*/bin.
func findBin() (string, error) {
	dirs := []string{}
	if d := os.Getenv("IPA_PG_BIN"); d != "" {
		dirs = append(dirs, d)
	} else {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
		dirs = append(dirs, found...)
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errMissing
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// start initializes and starts the cluster and returns its port.
func (c *cluster) start() (int, error) {
	dir, err := os.MkdirTemp("", "ipa-pgtest-")
	if err != nil {
		return 0, err
	}
	c.dir = dir
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return 0, err
	}
	// initdb refuses to run as root: run the server as an unprivileged user
	// that owns the directory.
	if os.Geteuid() == 0 {
		if err := c.dropPrivileges(); err != nil {
			return 0, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return 0, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=on", port, sock)
	if out, err := c.run("pg_ctl", "start", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return 0, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	c.watchdog(data)
	return port, nil
}

// dropPrivileges picks the postgres system user (or nobody) and gives it the
// temp dir.
func (c *cluster) dropPrivileges() error {
	if _, err := exec.LookPath("runuser"); err != nil {
		return fmt.Errorf("running as root and runuser is missing: %w", err)
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("running as root and no postgres or nobody user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c.user = u.Username
	return filepath.Walk(c.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// run runs one of the server binaries, as c.user when set.
func (c *cluster) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.user != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.user, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// watchdog starts a detached shell that stops the cluster once this process
// is gone, so a test binary that crashes or is killed leaves no server behind.
func (c *cluster) watchdog(data string) {
	stop := shellQuote(filepath.Join(c.bin, "pg_ctl")) + " stop -D " + shellQuote(data) + " -m immediate"
	if c.user != "" {
		stop = "runuser -u " + shellQuote(c.user) + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; if [ -d %s ]; then %s >/dev/null 2>&1; rm -rf %s; fi",
		os.Getpid(), shellQuote(data), stop, shellQuote(c.dir))
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait() //nolint:errcheck // reaped if it ends while we run
	}
}

// stop stops the server immediately and removes its files.
func (c *cluster) stop() {
	if c.dir == "" {
		return
	}
	data := filepath.Join(c.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		c.run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w") //nolint:errcheck // best effort
	}
	os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Block makes the database of url (one Start returned) unreachable the way an
// outage does: it refuses new connections and the open ones are ended. The
// returned function lets connections in again; it is also called when tb
// ends. Fails tb on an error.
func Block(tb testing.TB, dbURL string) (unblock func()) {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("pgtest: block: %v", err)
	}
	name := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS false"); err != nil {
		tb.Fatalf("pgtest: block: %v", err)
	}
	if err := adminExec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "+
		quoteLiteral(strings.TrimPrefix(u.Path, "/"))+" AND pid <> pg_backend_pid()"); err != nil {
		tb.Fatalf("pgtest: block: %v", err)
	}
	var once sync.Once
	unblock = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := adminExec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true"); err != nil {
				tb.Errorf("pgtest: unblock: %v", err)
			}
		})
	}
	tb.Cleanup(unblock)
	return unblock
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
