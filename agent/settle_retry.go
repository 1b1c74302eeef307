package agent

import (
	"context"
	"errors"

	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/store"
)

// settleOrLater settles a channel at the end of its call. If that fails
// for a reason that may pass (the node unreachable or restarting, no fee
// estimate), the decision to settle is stored (state closing, no
// settlement yet) so that Recover, which WatchExpiries runs every poll and
// every start runs once, tries again until the settlement is broadcast:
// the payee settles as soon as the node is back, not only when the
// refund's lock time comes near (DefaultSettleMargin), and a restart does
// not forget it. A failure that will not pass (nothing to settle, the pool
// spent by the other side) is returned as it is, and the channel keeps the
// state Settle left it in.
func (a *Payee) settleOrLater(ctx context.Context, id string) (string, error) {
	txid, err := a.Settle(ctx, id)
	// Claimed by another member of a fleet: that member settles it.
	if err == nil || txid != "" || errors.Is(err, channel.ErrSettlementDust) || errors.Is(err, store.ErrClaimed) {
		return txid, err
	}
	rec, gerr := a.Store.Get(context.WithoutCancel(ctx), id)
	if gerr != nil || rec.State != store.StateOpen {
		return txid, err
	}
	if serr := a.Store.SetState(context.WithoutCancel(ctx), id, store.StateClosing, ""); serr != nil {
		return txid, errors.Join(err, serr)
	}
	a.log().Warn("settlement failed: will retry", "channel", id, "err", err)
	return txid, err
}
