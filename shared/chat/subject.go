package chat

import "strings"

// NATS subjects and queue groups of the public contract. Every subject is
// built here so that no service spells one by hand.
const (
	// RoomPrefix is where chat messages are published; the CHAT stream
	// captures RoomWildcard and gives every message its sequence.
	RoomPrefix   = "chat.room."
	RoomWildcard = RoomPrefix + "*"

	// FeedPrefix is where the CHAT stream republishes every stored message,
	// with its sequence headers, for live fan-out by the gateways.
	FeedPrefix   = "chat.feed."
	FeedWildcard = FeedPrefix + "*"

	// PresencePrefix carries join and leave events of a room.
	PresencePrefix = "chat.presence."

	// BotCmd is the bot's request/reply subject, served in queue group BotQueue.
	BotCmd   = "bot.cmd"
	BotQueue = "bot"

	// SMSChannel is the subject of the SMS work queue (stream SMS).
	SMSChannel = "sms_channel"

	// HistoryPrefix is the history query subject of a room; HistoryRooms lists
	// rooms. Both are served in queue group HistoryQueue.
	HistoryPrefix = "history.room."
	HistoryRooms  = "history.rooms"
	HistoryQueue  = "history"
)

// RoomSubject is the subject chat messages of room are published on.
func RoomSubject(room string) string { return RoomPrefix + room }

// FeedSubject is the subject gateways subscribe to for room's live messages.
func FeedSubject(room string) string { return FeedPrefix + room }

// PresenceSubject carries room's join and leave events.
func PresenceSubject(room string) string { return PresencePrefix + room }

// HistorySubject is the history query subject of room.
func HistorySubject(room string) string { return HistoryPrefix + room }

// RoomFromSubject returns the room token of a chat.room.<room>,
// chat.feed.<room> or history.room.<room> subject, and whether it is a valid
// room name.
func RoomFromSubject(subject string) (string, bool) {
	for _, prefix := range []string{RoomPrefix, FeedPrefix, HistoryPrefix, PresencePrefix} {
		if room, ok := strings.CutPrefix(subject, prefix); ok {
			return room, ValidateName("room", room) == nil
		}
	}
	return "", false
}
