package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/natschat/chat/shared/chat"
)

// peer is the WebSocket protocol of the server under test: the chat's
// gateway or Centrifugo. Only the wire differs between peers; connecting,
// pacing, ids, loss, duplicates and latency are the bench's own and the
// same for both.
type peer interface {
	// url is the WebSocket of member user of room.
	url(wsBase, room, user string) string
	// hello is what a member sends once its socket is open, or nil.
	hello(room string) []byte
	// appendMessage appends the frame that publishes message n of
	// publisher pub, stamped sentAt (Unix ns), to room.
	appendMessage(b []byte, room string, pub int, n, sentAt int64) []byte
	// read says what one line of a server's WebSocket message is.
	read(line []byte) (frameKind, []byte)
}

// frameKind is what a line from the server means to a member.
type frameKind int

const (
	frameOther frameKind = iota // notices, acknowledgements
	// frameMessage is a delivery; read returns what follows textMarker.
	frameMessage
	// frameJoined: the member receives every live message of its room
	// from now on.
	frameJoined
	// frameError is an error reply or frame; read returns the line.
	frameError
	// frameRateLimited is a frameError that says the sender was too fast.
	frameRateLimited
	// framePing asks for an answer; read returns it.
	framePing
	// framePresence is the chat's presence frame; read returns the line.
	framePresence
)

// textMarker starts the text of every message this tool sends,
// b1|<publisher>|<n>|<send time, Unix ns>, in both peers' frames.
var textMarker = []byte(`"text":"b1|`)

// peerNamed is the peer of -peer name; batch is -chat-batch.
func peerNamed(name string, batch bool) (peer, error) {
	switch name {
	case "chat":
		return chatPeer{batch: batch}, nil
	case "centrifugo":
		return centrifugoPeer{}, nil
	}
	return nil, fmt.Errorf("unknown -peer %q: use chat or centrifugo", name)
}

// chatPeer is the chat's gateway. Message frames are read without decoding
// the JSON: their type and the text of this tool's messages are found with
// bytes.Index, because the tool must stay cheaper than the server it
// measures. Error frames are rare and decoded into chat.ServerFrame.
type chatPeer struct {
	// batch asks for batch=1, as the page does: the gateway may then put
	// several frames, one per line, in one WebSocket message when a
	// client is behind. Without it every frame is a message of its own
	// and a write of its own, which costs the gateway more.
	batch bool
}

var (
	typeField     = []byte(`"type":"`)
	messageFrame  = []byte(chat.FrameMessage)
	historyFrame  = []byte(chat.FrameHistory)
	errorFrame    = []byte(chat.FrameError)
	presenceFrame = []byte(chat.FramePresence)
)

func (p chatPeer) url(wsBase, room, user string) string {
	u := wsBase + "/ws/chat/" + room + "/" + user
	if p.batch {
		u += "?batch=1"
	}
	return u
}

// hello is nil: the gateway joins the room on connect and says so with a
// history frame.
func (chatPeer) hello(string) []byte { return nil }

func (chatPeer) appendMessage(b []byte, _ string, pub int, n, sentAt int64) []byte {
	return appendFrame(b, pub, n, sentAt)
}

func (chatPeer) read(f []byte) (frameKind, []byte) {
	switch typ := frameType(f); {
	case bytes.Equal(typ, messageFrame):
		if i := bytes.Index(f, textMarker); i >= 0 {
			return frameMessage, f[i+len(textMarker):]
		}
	case bytes.Equal(typ, historyFrame):
		return frameJoined, nil
	case bytes.Equal(typ, presenceFrame):
		return framePresence, f
	case bytes.Equal(typ, errorFrame):
		var sf chat.ServerFrame
		_ = json.Unmarshal(f, &sf) // a malformed one still counts as an error
		if sf.Code == chat.CodeRateLimited {
			return frameRateLimited, f
		}
		return frameError, f
	}
	return frameOther, nil
}

// frameType returns the value of f's "type" field, wherever the field is.
// The first match is the frame's own: a quote inside a JSON string is
// escaped, and the messages in a history frame have no type.
func frameType(f []byte) []byte {
	i := bytes.Index(f, typeField)
	if i < 0 {
		return nil
	}
	v := f[i+len(typeField):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

// appendFrame appends the chat client frame of message n of publisher pub.
// The client_id makes it a browser-like message (its echo is the ack).
func appendFrame(b []byte, pub int, n int64, sentAt int64) []byte {
	b = append(b, `{"type":"message","text":"b1|`...)
	b = appendText(b, pub, n, sentAt)
	b = append(b, `","client_id":"`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, n, 10)
	return append(b, `"}`...)
}

// appendText appends <pub>|<n>|<sentAt>, the text after "b1|".
func appendText(b []byte, pub int, n, sentAt int64) []byte {
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '|')
	return strconv.AppendInt(b, sentAt, 10)
}
