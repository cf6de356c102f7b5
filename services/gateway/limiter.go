package gateway

import (
	"golang.org/x/time/rate"

	"github.com/natschat/chat/shared/chat"
)

// sharedLimiter is the frame rate limiter of one signed-in user on this
// gateway, shared by all of their connections: ten tabs do not send ten
// times as fast. A guest has one per connection, since anyone may use a
// guest's name and must not be able to slow its other users down.
type sharedLimiter struct {
	lim  *rate.Limiter
	refs int
}

// limiterKey names the limiter of id; empty for a guest.
func limiterKey(id identity) string {
	if id.auth == chat.AuthGuest {
		return ""
	}
	return id.auth + ":" + chat.AccountKey(id.name)
}

// acquireLimiter returns the limiter for id, shared with id's other
// connections unless id is a guest. Every acquire is paired with a
// releaseLimiter.
func (g *Gateway) acquireLimiter(id identity) *rate.Limiter {
	key := limiterKey(id)
	if key == "" {
		return rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.limiters[key]
	if l == nil {
		l = &sharedLimiter{lim: rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst)}
		g.limiters[key] = l
	}
	l.refs++
	return l.lim
}

func (g *Gateway) releaseLimiter(id identity) {
	key := limiterKey(id)
	if key == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.limiters[key]; l != nil {
		if l.refs--; l.refs <= 0 {
			delete(g.limiters, key)
		}
	}
}
