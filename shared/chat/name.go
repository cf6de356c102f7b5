package chat

import (
	"errors"
	"fmt"
	"regexp"
)

// MaxNameLen is the longest room or user name, in bytes (names are ASCII).
const MaxNameLen = 64

// ErrInvalidName is wrapped by every error ValidateName returns.
var ErrInvalidName = errors.New("invalid name")

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidateName checks a room or user name. Names become NATS subject tokens,
// so anything that could widen a subscription (".", "*", ">") or break a
// subject (spaces, empty) is refused here, before it reaches NATS. what is
// "room" or "user" and only shapes the message.
func ValidateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s name is empty", ErrInvalidName, what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name is %d characters long, the limit is %d", ErrInvalidName, what, len(name), MaxNameLen)
	case !namePattern.MatchString(name):
		return fmt.Errorf("%w: %s name %q may only contain letters A-Z and a-z, digits, '-' and '_'", ErrInvalidName, what, name)
	}
	return nil
}
