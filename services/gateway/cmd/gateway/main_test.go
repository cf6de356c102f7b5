package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natstest"
)

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := config.Run(context.Background(), "GATEWAY", []string{"-h"}, &out, &out, gateway.Run); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GATEWAY_ADDR", "GATEWAY_NATS_URL", "GATEWAY_ALLOWED_ORIGINS", "GATEWAY_SEND_QUEUE", "GATEWAY_SHUTDOWN_TIMEOUT",
		"GATEWAY_GUESTS", "GATEWAY_SECURE_COOKIES", "GATEWAY_ADMINS", "GATEWAY_JWT_SECRET", "GATEWAY_JWT_PUBLIC_KEY", "GATEWAY_AUTH_TIMEOUT"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h does not list %s", v)
		}
	}
}

// TestSIGTERMDrains runs the real binary: on SIGTERM it closes WebSockets
// with going-away and exits cleanly within the shutdown timeout.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := natstest.Start(t)
	bin := filepath.Join(t.TempDir(), "gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GATEWAY_NATS_URL="+s.ClientURL(), "GATEWAY_ADDR="+addr, "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_LOG_FORMAT=json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws/chat/lobby/alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Read(ctx); err != nil { // the join history
		t.Fatal(err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, _, err = conn.Read(ctx) // presence, then the close
	}
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("socket closed with %v (%v), want going-away", got, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("still running 8s after SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("panic in output:\n%s", stderr.String())
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
