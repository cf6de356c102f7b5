package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FrameType names a WebSocket frame of the browser protocol: every frame is
// a JSON object whose "type" field is one of these.
type FrameType string

// Frame types. Browsers send message and history frames; the gateway sends
// every type.
const (
	FrameMessage  FrameType = "message"
	FrameHistory  FrameType = "history"
	FrameError    FrameType = "error"
	FrameNotice   FrameType = "notice"
	FramePresence FrameType = "presence"
)

// Code is the machine-readable reason of an error frame (and of a refused
// bot command, which the gateway forwards as one).
type Code string

// Error codes. An error frame never closes the socket: the client may go on.
const (
	// CodeInvalid: a malformed frame, a bad field, an empty text.
	CodeInvalid Code = "invalid"
	// CodeTooLong: a text over MaxTextLen characters.
	CodeTooLong Code = "too_long"
	// CodeRateLimited: too many frames, or too many commands in flight.
	CodeRateLimited Code = "rate_limited"
	// CodeUnavailable: storage or history could not be reached; try again.
	CodeUnavailable Code = "unavailable"
	// CodeBotUnavailable: no bot answered the command.
	CodeBotUnavailable Code = "bot_unavailable"
	// CodeUnknownCommand: the bot has no such command (see /help).
	CodeUnknownCommand Code = "unknown_command"
	// CodeUnconfirmed: storing the message was not confirmed in time; it
	// may have been stored. Its message frame is the confirmation; if none
	// comes, send it again with the same client_id (never a new one): the
	// stream's de-duplication keeps it one message.
	CodeUnconfirmed Code = "unconfirmed"
)

// ClientFrame is any frame a browser sends; Type says which fields apply:
// message (Text, ClientID) or history (Before, Limit).
type ClientFrame struct {
	Type     FrameType `json:"type"`
	Text     string    `json:"text,omitempty"`
	ClientID string    `json:"client_id,omitempty"`
	Before   uint64    `json:"before,omitempty"`
	Limit    int       `json:"limit,omitempty"`
}

// MessageFrame carries one stored message, live or as the sender's
// acknowledgement (it then has the sender's ClientID).
type MessageFrame struct {
	Type FrameType `json:"type"`
	Message
}

// HistoryFrame carries messages in seq order: the backlog on join or resume,
// or a page asked for with a history frame.
type HistoryFrame struct {
	Type     FrameType `json:"type"`
	Messages []Message `json:"messages"`
	// HasMore says older messages exist before the first one.
	HasMore bool `json:"has_more"`
	// Reset tells a resuming client that more was missed than a resume
	// carries, or that the stream started over: it drops what it shows
	// (and its last seq) and starts from these messages.
	Reset bool `json:"reset,omitempty"`
	// Epoch names the stream's sequence space (chat.EpochOf its creation
	// time). A client resumes with ?since=<seq>&epoch=<epoch>; a seq of
	// another epoch means nothing in this one, and the resume becomes a
	// reset.
	Epoch int64 `json:"epoch,omitempty"`
}

// ErrorFrame reports a refused frame or command.
type ErrorFrame struct {
	Type    FrameType `json:"type"`
	Code    Code      `json:"code"`
	Message string    `json:"message"`
	// ClientID names the message the error is about, if any.
	ClientID string `json:"client_id,omitempty"`
	// Until is when a CodeMuted mute ends.
	Until time.Time `json:"until,omitzero"`
}

// NoticeFrame is a private answer to a command (an acknowledgement, /help).
type NoticeFrame struct {
	Type FrameType `json:"type"`
	Text string    `json:"text"`
	// ClientID names the command this answers.
	ClientID string    `json:"client_id,omitempty"`
	Commands []Command `json:"commands,omitempty"`
}

// PresenceFrame is who is online in the room. The first one on a
// connection is the whole list; every later one is a delta (Delta true):
// who joined and who left since the previous frame, and whose guest status
// changed. A frame's size follows the change, not the size of the room.
// Roster applies them.
type PresenceFrame struct {
	Type  FrameType `json:"type"`
	Delta bool      `json:"delta,omitempty"`
	// Users is the whole list, sorted (not in a delta). It is never empty:
	// the client itself is online.
	Users []string `json:"users,omitempty"`
	// Joined and Left are the changes since the previous presence frame.
	// The whole list carries them too, for the first frame after others
	// were told of them.
	Joined []string `json:"joined,omitempty"`
	Left   []string `json:"left,omitempty"`
	// Guests are users connected as guests only (unregistered names); the
	// others signed in to an account or came with a token. In the whole
	// list: every guest of Users. In a delta: the guests among Joined, and
	// the users still online who are guests now and were not.
	Guests []string `json:"guests,omitempty"`
	// SignedIn (a delta only) are users still online who were guests and
	// are not any more.
	SignedIn []string `json:"signed_in,omitempty"`
}

// ServerFrame decodes any frame the gateway sends, for clients that read
// them all (tests, the benchmark tool): Type says which fields are set.
type ServerFrame struct {
	Type FrameType `json:"type"`
	// message
	Message
	// history
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
	Reset    bool      `json:"reset"`
	Epoch    int64     `json:"epoch"`
	// error
	Code  Code      `json:"code"`
	Error string    `json:"message"`
	Until time.Time `json:"until"`
	// notice (Text and ClientID are the message's fields)
	Commands []Command `json:"commands"`
	// presence
	Delta    bool     `json:"delta"`
	Users    []string `json:"users"`
	Joined   []string `json:"joined"`
	Left     []string `json:"left"`
	Guests   []string `json:"guests"`
	SignedIn []string `json:"signed_in"`
}

// DecodeFrames decodes one WebSocket message from the gateway. A client
// that connected with ?batch=1 may get several frames in one message,
// separated by newlines (JSON encoding never puts a raw newline in a frame).
func DecodeFrames(data []byte) ([]ServerFrame, error) {
	var frames []ServerFrame
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte{'\n'})
		var f ServerFrame
		if err := json.Unmarshal(line, &f); err != nil {
			return frames, fmt.Errorf("decode frame %.80q: %w", line, err)
		}
		if f.Type == "" {
			return frames, fmt.Errorf("decode frame %.80q: no type", line)
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// Refusal is a client frame refused by ParseClientFrame: the code and
// message of the error frame the sender gets.
type Refusal struct {
	Code     Code
	Message  string
	ClientID string // the message it is about, if any
}

func (e *Refusal) Error() string { return string(e.Code) + ": " + e.Message }

// ParseClientFrame decodes and checks a frame a browser sent. Every
// refusal is a *Refusal that says what is wrong; unknown fields are
// ignored, so that older gateways accept frames of newer clients.
func ParseClientFrame(data []byte) (ClientFrame, error) {
	var f ClientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return ClientFrame{}, &Refusal{Code: CodeInvalid, Message: "malformed JSON frame: " + err.Error()}
	}
	if len(f.ClientID) > MaxClientIDLen {
		return ClientFrame{}, &Refusal{Code: CodeInvalid, Message: fmt.Sprintf("client_id is longer than %d bytes", MaxClientIDLen)}
	}
	switch f.Type {
	case FrameMessage:
		if err := ValidateText(f.Text); err != nil {
			code := CodeInvalid
			if errors.Is(err, ErrTextTooLong) {
				code = CodeTooLong
			}
			return ClientFrame{}, &Refusal{Code: code, Message: strings.TrimPrefix(err.Error(), ErrBadMessage.Error()+": "), ClientID: f.ClientID}
		}
	case FrameHistory:
		if f.Limit < 0 {
			return ClientFrame{}, &Refusal{Code: CodeInvalid, Message: "limit must not be negative"}
		}
	default:
		return ClientFrame{}, &Refusal{Code: CodeInvalid, Message: fmt.Sprintf("unknown frame type %.40q: use \"message\" or \"history\"", f.Type), ClientID: f.ClientID}
	}
	return f, nil
}
