package gateway

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/coder/websocket"
)

// closeReason is why a client's connection ended. Every close goes through
// client.close with one of these; the first reason wins, and endClient
// logs it once and counts it in chat_gateway_disconnects_total.
type closeReason int

const (
	reasonNone closeReason = iota
	// reasonLeft: the browser closed the connection, or it broke.
	reasonLeft
	// reasonSlow: the client's send queue filled up.
	reasonSlow
	// reasonAbusive: rate-limited frames kept coming.
	reasonAbusive
	// reasonTooBig: a frame over the read limit.
	reasonTooBig
	// reasonProtocol: a frame that breaks the WebSocket protocol.
	reasonProtocol
	// reasonWriteFailed: a write did not complete within the write timeout.
	reasonWriteFailed
	// reasonUnavailable: the room or its backlog could not be served.
	reasonUnavailable
	// reasonNoPong: a ping went unanswered: the peer is gone.
	reasonNoPong
	// reasonShutdown: the gateway is stopping.
	reasonShutdown
	// reasonSessionEnded: the account's session ended (logout, password
	// change, expiry), on this gateway or another.
	reasonSessionEnded
	// reasonNameRegistered: a guest's name was just registered.
	reasonNameRegistered
)

// Close statuses of the identity reasons, in the range for applications
// (4000-4999), named after the HTTP status an upgrade would get: a page
// tells them apart from a network failure and asks the user to sign in
// instead of reconnecting.
const (
	statusSessionEnded   websocket.StatusCode = 4401
	statusNameRegistered websocket.StatusCode = 4403
)

var closeReasons = [...]struct {
	label string
	code  websocket.StatusCode
	text  string
}{
	reasonNone:        {"none", websocket.StatusNormalClosure, ""},
	reasonLeft:        {"left", websocket.StatusNormalClosure, ""},
	reasonSlow:        {"slow", websocket.StatusPolicyViolation, "too slow: send queue full"},
	reasonAbusive:     {"abusive", websocket.StatusPolicyViolation, "too many frames"},
	reasonTooBig:      {"too_big", websocket.StatusMessageTooBig, "frame too large"},
	reasonProtocol:    {"protocol_error", websocket.StatusProtocolError, "protocol error"},
	reasonWriteFailed: {"write_failed", websocket.StatusPolicyViolation, "write failed"},
	reasonUnavailable: {"unavailable", websocket.StatusInternalError, "chat unavailable, try again"},
	reasonNoPong:      {"no_pong", websocket.StatusPolicyViolation, "no answer to ping"},
	reasonShutdown:    {"shutdown", websocket.StatusGoingAway, "server shutting down"},

	reasonSessionEnded:   {"session_ended", statusSessionEnded, "session ended: sign in again"},
	reasonNameRegistered: {"name_registered", statusNameRegistered, "this name was just registered: sign in to use it"},
}

func (r closeReason) String() string { return closeReasons[r].label }

// status is the WebSocket close status and reason sent to the browser.
func (r closeReason) status() (websocket.StatusCode, string) {
	return closeReasons[r].code, closeReasons[r].text
}

// readFailure classifies the error that ended a client's reads.
func readFailure(err error) closeReason {
	switch {
	case websocket.CloseStatus(err) != -1,
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return reasonLeft
	case strings.Contains(err.Error(), "read limited"):
		// coder/websocket has already answered with 1009.
		return reasonTooBig
	default:
		return reasonProtocol
	}
}
