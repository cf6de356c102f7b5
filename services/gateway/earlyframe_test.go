package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestFrameSentWithTheUpgradeIsRead: a client that writes its first frame
// right behind its upgrade request, before the 101 (bots and integrations
// do; browsers wait), has it read like any other. It used to be dropped,
// and the connection often closed with 1002, when the bytes arrived with
// the request.
func TestFrameSentWithTheUpgradeIsRead(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 4096 })
	addr := strings.TrimPrefix(base, "http://")
	const conns, parallel = 1000, 25
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := sendWithUpgrade(addr, fmt.Sprintf("/ws/chat/early/u%d", i%50), fmt.Sprintf("early-%d", i)); err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections lost their first frame; first: %s", len(failures), conns, failures[0])
	}
	stored := storedMessages(t, natstest.Connect(t, s), "early", conns)
	seen := map[string]bool{}
	for _, m := range stored {
		seen[m.ClientID] = true
	}
	if len(seen) != conns {
		t.Errorf("%d distinct messages stored, want %d", len(seen), conns)
	}
}

// sendWithUpgrade writes the upgrade request and a message frame in one
// write, then reads frames until the message's acknowledgement.
func sendWithUpgrade(addr, path, clientID string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var key [16]byte
	rand.Read(key[:])
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key[:]))
	req.Write(maskedTextFrame(mustJSON(chat.ClientFrame{Type: chat.FrameMessage, Text: "hi", ClientID: clientID})))
	if _, err := conn.Write(req.Bytes()); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		return fmt.Errorf("%s: upgrade: %w", clientID, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("%s: upgrade: %s", clientID, res.Status)
	}
	for {
		opcode, payload, err := readServerFrame(r)
		if err != nil {
			return fmt.Errorf("%s: no acknowledgement: %w", clientID, err)
		}
		if opcode == 8 {
			return fmt.Errorf("%s: closed by the gateway: %q", clientID, payload)
		}
		frames, err := chat.DecodeFrames(payload)
		if err != nil {
			return err
		}
		for _, f := range frames {
			if f.Type == chat.FrameMessage && f.ClientID == clientID {
				return nil
			}
		}
	}
}

// maskedTextFrame is a client-to-server text frame (RFC 6455 5.2).
func maskedTextFrame(payload []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(0x81)
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(0x80 | byte(n))
	default:
		b.WriteByte(0x80 | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b.Write(mask[:])
	for i, c := range payload {
		b.WriteByte(c ^ mask[i%4])
	}
	return b.Bytes()
}

// readServerFrame reads one unmasked, unfragmented server frame.
func readServerFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l uint16
		err = binary.Read(r, binary.BigEndian, &l)
		n = uint64(l)
	case 127:
		err = binary.Read(r, binary.BigEndian, &n)
	}
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0] & 0x0f, payload, err
}
