package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natschat/chat/shared/config"
)

type spec struct {
	config.Log
	Addr  string `default:":8080" desc:"listen address"`
	Queue int    `default:"8" desc:"queue length"`
}

func (s spec) Validate() error {
	c := config.NewChecker("SVC")
	s.Log.Check(c)
	c.Check(s.Addr != "", "ADDR", "must not be empty")
	c.Check(s.Queue >= 1, "QUEUE", "must be at least 1 (got %d)", s.Queue)
	return c.Err()
}

type other struct {
	config.Log
	Name string `default:"x" desc:"a name"`
}

func (o other) Validate() error {
	c := config.NewChecker("OTHER")
	c.Check(o.Name != "", "NAME", "must not be empty")
	return c.Err()
}

func TestRun(t *testing.T) {
	var got spec
	run := func(_ context.Context, s spec, _ *slog.Logger) error {
		got = s
		return nil
	}
	t.Setenv("SVC_ADDR", ":1234")
	if err := Run(context.Background(), "SVC", nil, io.Discard, io.Discard, run); err != nil {
		t.Fatal(err)
	}
	if got.Addr != ":1234" || got.Queue != 8 {
		t.Errorf("run got %+v", got)
	}

	var out bytes.Buffer
	if err := Run(context.Background(), "SVC", []string{"-h"}, &out, io.Discard, run); err != nil || !strings.Contains(out.String(), "SVC_ADDR") {
		t.Errorf("-h: %v %q", err, out.String())
	}
	if err := Run(context.Background(), "SVC", []string{"--nope"}, io.Discard, io.Discard, run); !IsConfigError(err) {
		t.Errorf("bad argument: %v, want a configuration error", err)
	}

	var logs bytes.Buffer
	failed := errors.New("boom")
	err := Run(context.Background(), "SVC", nil, io.Discard, &logs, func(context.Context, spec, *slog.Logger) error { return failed })
	if !errors.Is(err, failed) || IsConfigError(err) {
		t.Errorf("run failure: %v", err)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("the failure is not logged: %q", logs.String())
	}
}

// TestRunValidatesEverythingFirst: every problem of every configuration is
// reported at once, and nothing runs.
func TestRunValidatesEverythingFirst(t *testing.T) {
	t.Setenv("SVC_QUEUE", "0")
	t.Setenv("SVC_ADDR", "")
	t.Setenv("SVC_LOG_LEVEL", "loud")
	t.Setenv("OTHER_NAME", "")
	var s spec
	var o other
	ran := false
	p := Program{
		Configs: []Env{{"SVC", &s}, {"OTHER", &o}},
		Run:     func(context.Context, *slog.Logger) error { ran = true; return nil },
	}
	err := p.Exec(context.Background(), nil, io.Discard, io.Discard)
	if !IsConfigError(err) || ran {
		t.Fatalf("got %v (ran %v), want a configuration error and nothing run", err, ran)
	}
	for _, want := range []string{
		"SVC_QUEUE must be at least 1 (got 0)",
		"SVC_ADDR must not be empty",
		"SVC_LOG_LEVEL (or LOG_LEVEL)",
		"OTHER_NAME must not be empty",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	t.Setenv("SVC_QUEUE", "many")
	if err := p.Exec(context.Background(), nil, io.Discard, io.Discard); !IsConfigError(err) || !strings.Contains(err.Error(), "SVC_QUEUE") {
		t.Errorf("unparsable value: %v", err)
	}
}

// TestProgramUsage: a program of several configurations lists each prefix.
func TestProgramUsage(t *testing.T) {
	var s spec
	var o other
	p := Program{About: "about the program\n", Configs: []Env{{"SVC", &s}, {"OTHER", &o}}}
	var out bytes.Buffer
	if err := p.Exec(context.Background(), []string{"-h"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"about the program", "SVC_* variables:", "SVC_QUEUE", "OTHER_* variables:", "OTHER_NAME", "(or LOG_LEVEL)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
}

// TestMainExitCodes runs Main in a child process (this test binary again):
// 0 after SIGINT once Run has returned, 1 when Run fails, 2 for a bad
// configuration, with every problem on stderr.
func TestMainExitCodes(t *testing.T) {
	if os.Getenv("SERVICE_TEST_MAIN") != "" {
		helperMain()
		return
	}
	child := func(env ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainExitCodes$")
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}

	t.Run("bad configuration", func(t *testing.T) {
		out, err := child("SERVICE_TEST_MAIN=serve", "SVC_QUEUE=0", "SVC_ADDR=").CombinedOutput()
		if got := exitCode(err); got != 2 {
			t.Errorf("exit %d, want 2\n%s", got, out)
		}
		for _, want := range []string{"svc: invalid configuration:", "  SVC_QUEUE must be at least 1 (got 0)", "  SVC_ADDR must not be empty"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("stderr lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("failure", func(t *testing.T) {
		out, err := child("SERVICE_TEST_MAIN=fail", "SVC_LOG_FORMAT=json").CombinedOutput()
		if got := exitCode(err); got != 1 || !strings.Contains(string(out), `"err":"boom"`) {
			t.Errorf("exit %d, want 1 with the error logged\n%s", got, out)
		}
	})
	t.Run("SIGINT", func(t *testing.T) {
		cmd := child("SERVICE_TEST_MAIN=serve", "SVC_LOG_FORMAT=json")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child says when its signal handler is in place.
		line := make([]byte, len("serving\n"))
		if _, err := io.ReadFull(stdout, line); err != nil {
			cmd.Wait()
			t.Fatalf("child did not start: %v\n%s", err, stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if got := exitCode(err); got != 0 || !strings.Contains(stderr.String(), "shut down") {
				t.Errorf("exit %d after SIGINT, want 0 after the shutdown\n%s", got, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatal("still running 10s after SIGINT")
		}
	})
}

func helperMain() {
	var run func(ctx context.Context, s spec, log *slog.Logger) error
	switch os.Getenv("SERVICE_TEST_MAIN") {
	case "fail":
		run = func(context.Context, spec, *slog.Logger) error { return errors.New("boom") }
	default:
		run = func(ctx context.Context, _ spec, log *slog.Logger) error {
			os.Stdout.WriteString("serving\n")
			<-ctx.Done()
			log.Info("shut down")
			return nil
		}
	}
	os.Args = os.Args[:1] // the child's own flags are the test binary's
	Main("svc", "SVC", run)
}
