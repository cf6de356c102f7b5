// Command sms-worker consumes the sms_channel work queue and sends the SMS.
// Configuration comes from SMSWORKER_* environment variables; see
// sms-worker -h.
package main

import (
	"context"
	"log/slog"

	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/service"
)

func main() {
	service.Main("sms-worker", smsworker.Prefix, func(ctx context.Context, cfg smsworker.Config, log *slog.Logger) error {
		return smsworker.Run(ctx, cfg, log)
	})
}
