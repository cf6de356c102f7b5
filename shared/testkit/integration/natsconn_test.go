package integration

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestConnectReconnectsAndLogs: the connection is named, survives its
// server going away and coming back, and says so in the log.
func TestConnectReconnectsAndLogs(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	var logs testkit.Buffer
	nc, err := natsconn.Connect(natsconn.Config{URL: s.ClientURL()}, "svc-test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testkit.WaitFor(t, "connected", nc.IsConnected)

	natstest.Disconnect(t, s, "svc-test")
	testkit.WaitFor(t, "reconnected", func() bool { return strings.Contains(logs.String(), "nats reconnected") })
	if !strings.Contains(logs.String(), "nats disconnected") || !strings.Contains(logs.String(), "nats_client=svc-test") {
		t.Errorf("log lacks the disconnect or the client name:\n%s", logs.String())
	}
}

func TestDrainWaitsForClose(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, err := natsconn.Connect(natsconn.Config{URL: s.ClientURL()}, "drain", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "connected", nc.IsConnected)
	if err := natsconn.Drain(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Error("connection not closed after Drain")
	}
}
