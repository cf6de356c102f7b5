package gateway

import (
	"encoding/json"

	"github.com/natschat/chat/shared/chat"
)

// Frame types of the WebSocket protocol.
const (
	frameMessage  = "message"
	frameHistory  = "history"
	frameError    = "error"
	frameNotice   = "notice"
	framePresence = "presence"
)

// Error codes sent in error frames.
const (
	codeInvalid        = "invalid"
	codeTooLong        = "too_long"
	codeRateLimited    = "rate_limited"
	codeUnavailable    = "unavailable"
	codeBotUnavailable = "bot_unavailable"
)

// inFrame is any frame a browser sends; Type says which fields apply.
type inFrame struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ClientID string `json:"client_id"`
	Before   uint64 `json:"before"`
	Limit    int    `json:"limit"`
}

type messageFrame struct {
	Type string `json:"type"`
	chat.Message
}

type historyFrame struct {
	Type     string         `json:"type"`
	Messages []chat.Message `json:"messages"`
	HasMore  bool           `json:"has_more"`
	// Reset tells a resuming client that more was missed than a resume
	// carries: it should drop what it shows and start from these messages.
	Reset bool `json:"reset,omitempty"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// ClientID names the message the error is about, if any.
	ClientID string `json:"client_id,omitempty"`
}

type noticeFrame struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// ClientID names the command this answers.
	ClientID string         `json:"client_id,omitempty"`
	Commands []chat.Command `json:"commands,omitempty"`
}

// encodeMessage builds the frame of a stored message. It is called once per
// message per room on this gateway and the bytes are shared by every client.
func encodeMessage(m chat.Message) []byte {
	return mustJSON(messageFrame{Type: frameMessage, Message: m})
}

func encodeError(code, message, clientID string) []byte {
	return mustJSON(errorFrame{Type: frameError, Code: code, Message: message, ClientID: clientID})
}

// mustJSON encodes values whose types cannot fail to marshal.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}
