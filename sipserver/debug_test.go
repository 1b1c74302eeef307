package sipserver_test

import (
	"log/slog"
	"os"

	"github.com/emiago/sipgo/sip"
)

func init() {
	sip.SIPDebug = os.Getenv("SIP_DEBUG") != ""
	// sipgo logs some connection bookkeeping on its package logger.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
}
