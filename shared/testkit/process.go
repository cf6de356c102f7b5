package testkit

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a child process started by StartProcess or StartCmd.
type Process struct {
	Name string
	Cmd  *exec.Cmd

	out  Buffer
	done chan struct{} // closed once the process exited
	err  error         // of cmd.Wait, set before done is closed
}

// stopGrace is how long the cleanup waits after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// StartProcess runs the binary bin with the test's environment plus env.
// See StartCmd.
func StartProcess(t testing.TB, name, bin string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	return StartCmd(t, name, cmd)
}

// StartCmd starts cmd and keeps its output (stdout and stderr, also copied
// to cmd.Stdout if the caller set it, such as a log file). When the test
// ends the process is stopped (SIGTERM, then SIGKILL after 10s), and if the
// test failed its last lines are logged. It dies with the test binary.
func StartCmd(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: cmd, done: make(chan struct{})}
	var out io.Writer = &p.out
	if cmd.Stdout != nil {
		out = io.MultiWriter(&p.out, cmd.Stdout)
	}
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, stopGrace)
		if t.Failed() {
			t.Logf("--- last lines of %s (pid %d):\n%s", name, cmd.Process.Pid, tail(p.Output(), 50))
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
}

// Kill ends the process with SIGKILL, giving it no chance to drain, and
// waits until it is gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and returns how the process exited (nil: status
// 0). A process still running after Deadline fails the test.
func (p *Process) Terminate(t testing.TB) error {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	return p.Wait(t)
}

// Wait waits for the process to exit by itself and returns how it exited
// (nil: status 0). A process still running after Deadline fails the test.
func (p *Process) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(Deadline):
		t.Fatalf("%s still running after %v", p.Name, Deadline)
		return nil
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process exited; valid once Exited.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Lines is Output split into lines, without the last partial one.
func (p *Process) Lines() []string {
	out := p.Output()
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		return strings.Split(out[:i], "\n")
	}
	return nil
}

func (p *Process) stop(sig syscall.Signal, grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
