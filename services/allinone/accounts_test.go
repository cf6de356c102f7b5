package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
)

// TestAccountsServed: the all-in-one runs the accounts service, with its
// SQLite file next to chat.db.
func TestAccountsServed(t *testing.T) {
	s := startStack(t)
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var r chat.AuthReply
	testkit.WaitFor(t, "accounts answering", func() bool {
		m, err := nc.Request(chat.AuthRegister, []byte(`{"name":"alice","password":"correct horse"}`), 5*time.Second)
		return err == nil && json.Unmarshal(m.Data, &r) == nil && r.Code != chat.CodeUnavailable
	})
	if !r.OK || r.Session == nil || r.Session.Token == "" {
		t.Fatalf("register: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("CHAT_DATA_DIR"), "accounts.db")); err != nil {
		t.Errorf("accounts.db is not in CHAT_DATA_DIR: %v", err)
	}
}
