package gateway

import (
	"context"
	"time"
)

// pingLoop pings every live client each PingInterval: a peer that vanished
// without closing (a laptop lid, a dead NAT entry) does not answer and is
// closed, instead of holding its connection and its place in the room for
// good. The pings run on the clients' own goroutines, only while waiting
// for their pong.
func (g *Gateway) pingLoop() {
	tick := time.NewTicker(g.cfg.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.stopPing:
			return
		case <-tick.C:
		}
		g.mu.Lock()
		clients := make([]*client, 0, len(g.clients))
		for c := range g.clients {
			clients = append(clients, c)
		}
		g.mu.Unlock()
		for _, c := range clients {
			c.ping(g.cfg.PingTimeout)
		}
	}
}

// ping sends c a ping, unless one is in flight or c is still joining (its
// reads, which take the pong, have not started), and closes c if no pong
// comes within timeout.
func (c *client) ping(timeout time.Duration) {
	c.mu.Lock()
	if c.pinging || c.joining || c.gone {
		c.mu.Unlock()
		return
	}
	c.pinging = true
	c.mu.Unlock()
	c.spawn(func() {
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		defer cancel()
		err := c.conn.Ping(ctx)
		c.mu.Lock()
		c.pinging = false
		c.mu.Unlock()
		if err != nil && c.ctx.Err() == nil {
			c.close(reasonNoPong)
		}
	})
}
