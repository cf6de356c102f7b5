package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBusyPorts: a taken HTTP or NATS port stops the all-in-one at once
// with the variable to set, before the embedded server or any service
// starts (nothing else is logged).
func TestBusyPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	for _, tt := range []struct {
		name, httpPort, natsPort, want string
	}{
		{"http", takenPort, free(), "set GATEWAY_ADDR, e.g. GATEWAY_ADDR=127.0.0.1:8081"},
		{"nats", free(), takenPort, "set CHAT_NATS_PORT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GATEWAY_ADDR", "127.0.0.1:"+tt.httpPort)
			t.Setenv("CHAT_NATS_PORT", tt.natsPort)
			t.Setenv("CHAT_DATA_DIR", t.TempDir())
			t.Setenv("LOG_FORMAT", "json")
			t.Setenv("LOG_LEVEL", "info")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var logs bytes.Buffer
			err := run(ctx, nil, io.Discard, &logs)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), takenPort) {
				t.Fatalf("got %v, want an error naming the port and saying %q", err, tt.want)
			}
			// The error, logged once, is all there is: nothing started.
			if lines := strings.Split(strings.TrimSpace(logs.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Errorf("log is not just the hint:\n%s", logs.String())
			}
		})
	}
}
