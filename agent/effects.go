package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/paywire"
)

// perform carries out effects in order and stops at the first failure:
// that is how a refund is stored before the funding is broadcast, and a
// payment stored before it is sent (payer) or acknowledged (payee). A
// refusal of the peer's message (herr) is logged at warn and returned.
func perform(effs []channel.Effect, herr error, log *slog.Logger, do func(channel.Effect) error) error {
	for _, ef := range effs {
		if err := do(ef); err != nil {
			return err
		}
	}
	if herr != nil {
		var pe *channel.ProtocolError
		if errors.As(herr, &pe) {
			log.Warn("refused the peer's message", "code", pe.Code, "err", herr)
		}
		return herr
	}
	return nil
}

// sendMsg encodes and sends one protocol message.
func sendMsg(ctx context.Context, conn Conn, m paywire.Message) error {
	b, err := paywire.Encode(m)
	if err != nil {
		return err
	}
	return conn.Send(ctx, b)
}
