package main

import (
	"bytes"
	"strconv"
)

// centrifugoPeer is Centrifugo's bidirectional JSON protocol over
// /connection/websocket. A client sends commands {"id":N,"<method>":{...}};
// the server answers each with a reply carrying the same id, and sends
// publications as {"push":{"channel":...,"pub":{"data":...}}}. Several
// replies and pushes may share one WebSocket message, one per line, as the
// chat's batch=1 frames do. The bench's room is the channel
// centrifugoNamespace:<room>; bench/peers.sh configures that namespace to
// let anonymous clients subscribe and publish.
type centrifugoPeer struct{}

const centrifugoNamespace = "bench"

// Command ids: connect and subscribe, then message n of a publisher is
// command firstPublishID+n on its connection.
const (
	connectID      = 1
	subscribeID    = 2
	firstPublishID = 3
)

var (
	pushPrefix  = []byte(`{"push":`)
	pubField    = []byte(`"pub":`)
	replyPrefix = []byte(`{"id":`)
	// Centrifugo's application-level ping is an empty command; the
	// client answers with an empty one.
	emptyCommand = []byte(`{}`)
)

// url is the same for every member: the channel is named in the subscribe
// command. There is no user: connections are anonymous (no token).
func (centrifugoPeer) url(wsBase, _, _ string) string {
	return wsBase + "/connection/websocket"
}

// hello connects and subscribes in one WebSocket message: Centrifugo runs
// the commands of a message in order, so the subscribe finds the client
// connected.
func (centrifugoPeer) hello(room string) []byte {
	b := []byte(`{"id":` + strconv.Itoa(connectID) + `,"connect":{}}` + "\n")
	b = append(b, `{"id":`+strconv.Itoa(subscribeID)+`,"subscribe":{"channel":"`...)
	b = appendChannel(b, room)
	return append(b, `"}}`...)
}

func (centrifugoPeer) appendMessage(b []byte, room string, pub int, n, sentAt int64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, firstPublishID+n, 10)
	b = append(b, `,"publish":{"channel":"`...)
	b = appendChannel(b, room)
	b = append(b, `","data":{"text":"b1|`...)
	b = appendText(b, pub, n, sentAt)
	return append(b, `"}}}`...)
}

func appendChannel(b []byte, room string) []byte {
	b = append(b, centrifugoNamespace...)
	b = append(b, ':')
	return append(b, room...)
}

// read finds publications with bytes.Index, like chatPeer: Centrifugo
// passes the published data through as it was sent, so the bench text is
// found the same way in both peers' frames.
func (centrifugoPeer) read(f []byte) (frameKind, []byte) {
	switch {
	case bytes.Equal(f, emptyCommand):
		return framePing, emptyCommand
	case bytes.HasPrefix(f, pushPrefix):
		if bytes.Contains(f, pubField) {
			if i := bytes.Index(f, textMarker); i >= 0 {
				return frameMessage, f[i+len(textMarker):]
			}
			return frameOther, nil
		}
		// join, leave or message pushes are not configured; the others
		// (unsubscribe, disconnect) end what the bench measures.
		return frameError, f
	case bytes.HasPrefix(f, replyPrefix):
		id, rest, ok := parseUint(f[len(replyPrefix):], ',')
		switch {
		case !ok:
			return frameOther, nil
		case bytes.HasPrefix(rest, []byte(`"error":`)):
			return frameError, f
		case id == subscribeID && bytes.HasPrefix(rest, []byte(`"subscribe":`)):
			return frameJoined, nil
		}
	}
	return frameOther, nil
}
