package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// errConsumerGone is a pull request's answer when the durable consumer (or
// its stream) no longer exists.
var errConsumerGone = errors.New("consumer missing")

// Acknowledgement bodies of the JetStream protocol, published to a
// delivery's reply subject.
var (
	ackDone       = []byte("+ACK")
	ackRedeliver  = []byte("-NAK")
	ackInProgress = []byte("+WPI")
)

func ackTerm(reason string) []byte { return []byte("+TERM " + reason) }

type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires,omitempty"`
	NoWait  bool          `json:"no_wait,omitempty"`
}

// pull asks the consumer whose next-message subject is subject for up to
// batch messages, waiting up to wait for them (zero: only what is waiting
// now), and returns the deliveries.
//
// It speaks the pull protocol over core NATS instead of through the
// jetstream package, because that package takes any message with an empty
// body and a Status header for a status from the server: a chat message
// published with a forged "Status: 404" header would end every fetch, never
// be acked, and hold back the ack floor (stored_through) and the rest of
// its batch forever. Here a delivery is whatever carries an ack subject; a
// server status never does. (A channel subscription, because a synchronous
// one's NextMsg also swallows a message that looks like "no responders".)
func pull(nc *nats.Conn, subject string, batch int, wait time.Duration) ([]*nats.Msg, error) {
	inbox := nc.NewInbox()
	// Room for the whole batch and a status, so the client never has to
	// drop one of them.
	answers := make(chan *nats.Msg, batch+2)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return nil, fmt.Errorf("subscribe for pull: %w", err)
	}
	defer sub.Unsubscribe()
	req := pullRequest{Batch: batch, Expires: wait, NoWait: wait <= 0}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode pull request: %w", err)
	}
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, fmt.Errorf("send pull request: %w", err)
	}
	// The server ends the request by its expiry; the margin only guards
	// against an answer lost with the connection.
	deadline := time.NewTimer(max(wait, 0) + 2*time.Second)
	defer deadline.Stop()
	var msgs []*nats.Msg
	for len(msgs) < batch {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-deadline.C:
			if len(msgs) > 0 {
				return msgs, nil
			}
			return nil, errors.New("no answer to a pull request")
		}
		if m.Reply != "" {
			msgs = append(msgs, m)
			continue
		}
		status, desc := m.Header.Get("Status"), m.Header.Get("Description")
		switch {
		case status == "404" || status == "408": // no (more) messages
			return msgs, nil
		case status == "100": // heartbeat or flow control, not asked for
		case status == "503": // nobody serves the subject: no such consumer
			return msgs, errConsumerGone
		case status == "409" && strings.Contains(strings.ToLower(desc), "consumer deleted"):
			return msgs, errConsumerGone
		default:
			return msgs, fmt.Errorf("pull request refused: %s %s", status, desc)
		}
	}
	return msgs, nil
}
