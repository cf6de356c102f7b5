package testkit

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// client bounds every probe, so that a hung server makes a wait time out
// instead of blocking it.
var client = &http.Client{Timeout: 5 * time.Second}

// Get returns the status and body of GET url, or the error that stopped it.
// It does not fail the test, so that it can be polled in WaitFor.
func Get(url string) (status int, body string, err error) {
	res, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// GetOK returns the body of GET url and fails the test unless it answers 200.
func GetOK(t testing.TB, url string) string {
	t.Helper()
	status, body, err := Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	return body
}

// WaitStatus waits until GET url answers status with a body containing
// want (any body if want is empty).
func WaitStatus(t testing.TB, url string, status int, want string) {
	t.Helper()
	WaitForState(t, Deadline, fmt.Sprintf("GET %s to answer %d %q", url, status, want), func() (bool, string) {
		got, body, err := Get(url)
		if err != nil {
			return false, err.Error()
		}
		return got == status && strings.Contains(body, want), fmt.Sprintf("%d %q", got, body)
	})
}

// WaitReady waits until base+"/readyz" answers 200: the service says it
// serves. base is like http://127.0.0.1:8080.
func WaitReady(t testing.TB, base string) {
	t.Helper()
	WaitStatus(t, base+"/readyz", http.StatusOK, "")
}

// Metric reads one series, such as `chat_gateway_rooms` or
// `chat_bot_commands_total{command="now",outcome="ok"}`, from the
// Prometheus text at url. ok is false if the series is not there (a
// labelled counter before its first increment).
func Metric(t testing.TB, url, series string) (v float64, ok bool) {
	t.Helper()
	for _, line := range strings.Split(GetOK(t, url), "\n") {
		if s, found := strings.CutPrefix(line, series+" "); found {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v, true
		}
	}
	return 0, false
}
