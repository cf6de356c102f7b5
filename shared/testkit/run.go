package testkit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Start runs a service in the background until the test ends or the
// returned stop is called: run gets a context that stop cancels, then stop
// waits up to Deadline for run to return. An error from run, or a run that
// does not return, fails the test. stop may be called more than once; it
// is also a cleanup of the test, so a test that does not stop the service
// itself still stops it cleanly.
func Start(t testing.TB, name string, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s stopped with: %v", name, err)
			}
		case <-time.After(Deadline):
			t.Errorf("%s did not stop within %v of its context ending", name, Deadline)
		}
	})
	t.Cleanup(stop)
	return stop
}
