package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Binaries are built once per test binary run, into one temporary
// directory that Main removes at the end.
var builds struct {
	mu   sync.Mutex
	dir  string
	once map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests of a package that builds binaries and then removes
// them. Call it from the package's TestMain:
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// Build returns the path of the binary name, built by cmd on the first call
// for that name in this test run: cmd gets the path to write and returns
// the command that writes it. Later calls, also from parallel tests, wait
// for that build and share it.
func Build(t testing.TB, name string, cmd func(out string) *exec.Cmd) string {
	t.Helper()
	builds.mu.Lock()
	if builds.once == nil {
		builds.once = make(map[string]*build)
	}
	b := builds.once[name]
	if b == nil {
		b = &build{}
		builds.once[name] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		dir, err := binDir()
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		c := cmd(b.path)
		if out, err := c.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// GoBuild is Build with `go build` of the main package pkg (such as
// "./cmd/history") of the module in dir (relative to the test's package
// directory, "." for its own). The binary is named after pkg's last
// element.
func GoBuild(t testing.TB, dir, pkg string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(dir, pkg))
	if err != nil {
		t.Fatal(err)
	}
	return Build(t, filepath.Base(abs), func(out string) *exec.Cmd {
		c := exec.Command("go", "build", "-o", out, pkg)
		c.Dir = dir
		return c
	})
}

func binDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "chat-test-bin-")
		if err != nil {
			return "", fmt.Errorf("binary directory: %w", err)
		}
		builds.dir = dir
	}
	return builds.dir, nil
}
