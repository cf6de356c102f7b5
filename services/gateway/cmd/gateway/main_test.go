package main

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := config.Run(context.Background(), "GATEWAY", []string{"-h"}, &out, &out, gateway.Run); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GATEWAY_ADDR", "GATEWAY_NATS_URL", "GATEWAY_ALLOWED_ORIGINS", "GATEWAY_SEND_QUEUE", "GATEWAY_SHUTDOWN_TIMEOUT"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h does not list %s", v)
		}
	}
}

// TestSIGTERMDrains runs the real binary: on SIGTERM it closes WebSockets
// with going-away and exits cleanly.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := natstest.Start(t)
	bin := testkit.GoBuild(t, ".", ".")
	addr := testkit.FreeAddr(t)
	p := testkit.StartProcess(t, "gateway", bin, "GATEWAY_NATS_URL="+s.ClientURL(), "GATEWAY_ADDR="+addr, "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_LOG_FORMAT=json")
	testkit.WaitReady(t, "http://"+addr)
	c := wstest.Dial(t, "ws://"+addr+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)

	start := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if err := c.WaitClosed(); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("socket closed with %v (%v), want going-away", websocket.CloseStatus(err), err)
	}
	if err := p.Wait(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	if strings.Contains(p.Output(), "panic") {
		t.Errorf("panic in output:\n%s", p.Output())
	}
}

func TestMain(m *testing.M) { testkit.Main(m) }
