package wstest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
)

// echo is a stand-in gateway: a history frame, then two frames in one
// message as with ?batch=1, then each client message back as a message
// frame; "close" makes it close with going-away.
func echo(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		c.Write(ctx, websocket.MessageText, []byte(`{"messages":[],"type":"history","has_more":false}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"presence","users":["a"]}`+"\n"+`{"type":"error","code":"invalid","message":"no"}`))
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var f chat.ClientFrame
			json.Unmarshal(data, &f)
			if f.Text == "close" {
				c.Close(websocket.StatusGoingAway, "bye")
				return
			}
			b, _ := json.Marshal(chat.MessageFrame{Type: chat.FrameMessage, Message: chat.Message{Seq: 1, User: "a", Text: f.Text, ClientID: f.ClientID}})
			c.Write(ctx, websocket.MessageText, b)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClient(t *testing.T) {
	c := Dial(t, echo(t)+"/ws")
	if h := c.Next(chat.FrameHistory); h.HasMore {
		t.Errorf("history %+v", h)
	}
	c.Say("hi", "c1")
	before := c.Until("my message", func(f chat.ServerFrame) bool { return f.Type == chat.FrameMessage && f.ClientID == "c1" })
	if len(before) != 2 || before[0].Type != chat.FramePresence || before[1].Code != chat.CodeInvalid {
		t.Errorf("frames before the message: %+v", before)
	}
	c.Say("close", "c2")
	if got := websocket.CloseStatus(c.WaitClosed()); got != websocket.StatusGoingAway {
		t.Errorf("close status %v, want going away", got)
	}
}
