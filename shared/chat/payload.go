package chat

import "time"

// BotRequest is the request on BotCmd: the command line a user typed.
type BotRequest struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	User string `json:"user"`
	Text string `json:"text"`
	// Auth is how the gateway knew User (AuthAccount, AuthGuest,
	// AuthToken); empty for a request from NATS directly (an operator).
	Auth string `json:"auth,omitempty"`
}

// BotReply answers a BotRequest. Public answers go to the room as messages of
// kind bot; Notice is a private answer for the sender only (an
// acknowledgement, the /help text). Code is a machine-readable error code
// such as "unknown_command" or "invalid".
type BotReply struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Code   Code   `json:"code,omitempty"`
	Notice string `json:"notice,omitempty"`
	// Commands lists the bot's commands in the answer to /help, so that a
	// UI can offer them without keeping its own copy.
	Commands []Command `json:"commands,omitempty"`
}

// Command describes one bot command: its name ("sms"), its syntax
// ("/sms <user>") and what it does.
type Command struct {
	Name  string `json:"name"`
	Usage string `json:"usage"`
	Help  string `json:"help"`
}

// SMSTask is a job on SMSChannel. It is published with the Nats-Msg-Id header
// set to ID so a retried publish is not a second task.
type SMSTask struct {
	ID          string    `json:"id"`
	Room        string    `json:"room"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	RequestedAt time.Time `json:"requested_at"`
}

// HistoryRequest asks for messages of a room with Before > seq > After
// (zero means unbounded), newest first when only Before is set, at most Limit.
// Epoch selects an earlier epoch of the CHAT stream (see HistoryResponse);
// zero means the current one.
type HistoryRequest struct {
	Before uint64 `json:"before,omitempty"`
	After  uint64 `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	Epoch  int64  `json:"epoch,omitempty"`
}

// HistoryResponse answers a HistoryRequest with messages in seq order.
//
// Sequences are numbers of one CHAT stream: a stream that is deleted and
// created again (or loses its store) starts over at 1. Epoch names the
// stream the messages and StoredThrough belong to: its creation time in
// microseconds since 1970 (a safe JavaScript integer), what a JetStream
// stream info reports as created. A reader that knows the stream's
// creation time compares it with Epoch; a different value means the seqs
// are not comparable with the ones it holds. Messages of an earlier epoch
// stay readable with HistoryRequest.Epoch; PreviousEpoch names the epoch
// before this one (zero: none), so a reader can walk back.
//
// StoredThrough is the stream sequence up to which every message is stored:
// anything newer may not be in the database yet and must come from the
// stream. It is zero for an earlier epoch, whose stream is gone.
type HistoryResponse struct {
	Messages      []Message `json:"messages"`
	HasMore       bool      `json:"has_more"`
	StoredThrough uint64    `json:"stored_through"`
	Epoch         int64     `json:"epoch"`
	PreviousEpoch int64     `json:"previous_epoch,omitempty"`
	Error         string    `json:"error,omitempty"`
}

// EpochOf is the Epoch of a stream created at created (its JetStream
// stream info's Created).
func EpochOf(created time.Time) int64 { return created.UnixMicro() }

// Room describes a room in a RoomsResponse.
type Room struct {
	Name          string    `json:"name"`
	Messages      int64     `json:"messages"`
	CreatedAt     time.Time `json:"created_at"`
	LastMessageAt time.Time `json:"last_message_at"`
}

// RoomsResponse answers a request on HistoryRooms, most recently active first.
type RoomsResponse struct {
	Rooms []Room `json:"rooms"`
	Error string `json:"error,omitempty"`
}

// Presence events on PresenceSubject. Gateways publish them for the users
// connected to them; together they tell who is online in a room.
const (
	// PresenceJoin: User opened a first connection to the room on Gateway.
	PresenceJoin = "join"
	// PresenceLeave: User closed their last connection to the room on Gateway.
	PresenceLeave = "leave"
	// PresenceHere: Users is everyone connected to the room on Gateway. Sent
	// periodically: a gateway that stops sending it (it crashed) has its
	// users dropped after a few periods.
	PresenceHere = "here"
	// PresenceSync asks every gateway to send PresenceHere now.
	PresenceSync = "sync"
)

// Presence is an event on PresenceSubject.
type Presence struct {
	Room    string   `json:"room"`
	Event   string   `json:"event"`
	Gateway string   `json:"gateway"`
	User    string   `json:"user,omitempty"`
	Users   []string `json:"users,omitempty"`
	// Guest (join) says User is connected as a guest only; Guests (here)
	// lists the Users connected as guests only. A user with any signed-in
	// connection (account or token) is not a guest.
	Guest  bool      `json:"guest,omitempty"`
	Guests []string  `json:"guests,omitempty"`
	TS     time.Time `json:"ts"`
}
