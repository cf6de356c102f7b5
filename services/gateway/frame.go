package gateway

import (
	"encoding/json"

	"github.com/natschat/chat/shared/chat"
)

// encodeMessage builds the frame of a stored message. It is called once per
// message per room on this gateway and the bytes are shared by every client.
func encodeMessage(m chat.Message) []byte {
	return mustJSON(chat.MessageFrame{Type: chat.FrameMessage, Message: m})
}

func encodeError(code chat.Code, message, clientID string) []byte {
	return mustJSON(chat.ErrorFrame{Type: chat.FrameError, Code: code, Message: message, ClientID: clientID})
}

// mustJSON encodes values whose types cannot fail to marshal.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}
