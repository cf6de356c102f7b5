package history

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// TestKillAndRestart kills the history process with SIGKILL while 10,000
// messages are being published and stored, restarts it, and checks that
// every message is stored exactly once. It then stops it with SIGTERM,
// which must end it cleanly.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	db := pgtest.Postgres(t) // first: a skip should not build anything
	bin := testkit.GoBuild(t, ".", "./cmd/history")
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	st := openStore(t, store.Options{URL: db.URL})
	env := []string{
		"HISTORY_NATS_URL=" + s.ClientURL(),
		"HISTORY_DATABASE_URL=" + db.URL,
		"HISTORY_LOG_FORMAT=json",
		"HISTORY_FETCH_WAIT=250ms",
		// What the killed process had fetched but not acked is redelivered
		// after the ack wait; a short one keeps the test short.
		"HISTORY_ACK_WAIT=2s",
	}

	first := testkit.StartProcess(t, "history", bin, env...)
	testkit.WaitForState(t, testkit.Deadline, "the process to answer queries", func() (bool, string) {
		var resp chat.RoomsResponse
		err := request(nc, chat.HistoryRooms, nil, &resp)
		return err == nil, fmt.Sprint(err)
	})

	const n = 10_000
	rooms := roomNames(10)
	published := make(chan error, 1)
	go func() {
		// Paced at about 10,000 a second so that the kill lands while
		// messages are still arriving and being stored.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += 100 {
			<-tick.C
			for j := i; j < i+100; j++ {
				data := fmt.Sprintf(`{"user":"u%d","text":"m-%d","client_id":"c-%d"}`, j%7, j, j)
				if err := nc.Publish(chat.RoomSubject(rooms[j%len(rooms)]), []byte(data)); err != nil {
					published <- err
					return
				}
			}
		}
		published <- nc.Flush()
	}()

	testkit.WaitForState(t, testkit.Deadline, "a few thousand stored messages", func() (bool, string) {
		got, err := storedCount(st)
		return got >= 2000, fmt.Sprintf("%d stored (err %v)", got, err)
	})
	first.Kill(t)
	atKill, err := storedCount(st)
	if err != nil {
		t.Fatal(err)
	}
	if atKill >= n {
		t.Fatalf("all %d messages were stored before the kill: the test proves nothing, slow the publisher down", n)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	second := testkit.StartProcess(t, "history", bin, env...)
	c := waitStored(t, st, n, 60*time.Second)
	checkExactlyOnce(t, c, n, true)
	t.Logf("killed with %d of %d stored", atKill, n)

	if err := second.Terminate(t); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// storedCount is the number of stored messages according to the room
// counters, which are updated in the same transaction as the rows.
func storedCount(st *store.Store) (int64, error) {
	rooms, err := st.Rooms(context.Background(), 1000)
	var total int64
	for _, r := range rooms {
		total += r.Messages
	}
	return total, err
}
