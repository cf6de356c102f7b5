package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// BenchmarkSave is the history service's write path: one batch of 500
// messages over 10 rooms in one transaction. It reports messages/s.
func BenchmarkSave(b *testing.B) {
	dialects := map[string]func(b *testing.B) Options{
		"sqlite":   func(b *testing.B) Options { return Options{SQLitePath: filepath.Join(b.TempDir(), "chat.db")} },
		"postgres": func(b *testing.B) Options { return Options{URL: pgtest.Postgres(b).URL} },
	}
	for _, name := range []string{"postgres", "sqlite"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, dialects[name](b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			const batch = 500
			ts := time.Now().UTC()
			var seq uint64
			msgs := make([]chat.Message, batch)
			b.ResetTimer()
			for b.Loop() {
				for i := range msgs {
					seq++
					msgs[i] = chat.Message{
						Room: fmt.Sprintf("room-%d", seq%10), Seq: seq, User: fmt.Sprintf("u%d", seq%50),
						Text: "a message of a typical length, about sixty characters long", Kind: chat.KindUser, TS: ts,
					}
				}
				if _, err := s.Save(ctx, 0, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
