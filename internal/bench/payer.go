package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// payer is one bench payer's channel: the protocol's payer state machine
// driven over a connection, funded from a coin prepared for it. It keeps
// nothing on disk: the bench's chain and wallets are thrown away.
type payer struct {
	p    *channel.Payer
	key  *btcec.PrivateKey
	conn agent.Conn
}

// payerWallet is what the bench's payers share: one wallet, one channel
// key and one refund script for all their channels (each channel is its
// own funding outpoint and payee key). A real payer derives a key per
// channel; here that would time the wallet's file writes, not the payee.
type payerWallet struct {
	w      *wallet.Wallet
	key    *btcec.PrivateKey
	script []byte
}

func newPayerWallet(w *wallet.Wallet) (*payerWallet, error) {
	key, _, err := w.ChannelKey()
	if err != nil {
		return nil, err
	}
	script, err := w.NewScript()
	if err != nil {
		return nil, err
	}
	return &payerWallet{w: w, key: key, script: script}, nil
}

// openPayer opens a channel of capacity over conn, funding it from coin
// (which pays pw.script).
func openPayer(ctx context.Context, conn agent.Conn, pw *payerWallet, c chain.Chain, coin txbuild.Coin, capacity, maxPrice int64) (*payer, error) {
	key, w, script := pw.key, pw.w, pw.script
	tip, err := c.TipHeight(ctx)
	if err != nil {
		return nil, err
	}
	p := channel.NewPayer(channel.PayerConfig{Key: key, MaxPriceSatPerMin: maxPrice, MaxCapacitySat: capacity, FeeRate: feeRate, Agent: "paysip-bench"})
	p.ObserveTip(uint32(tip))
	pc := &payer{p: p, key: key, conn: conn}
	effs, err := p.Start()
	if err != nil {
		return nil, err
	}
	for p.State() != channel.PayerOpen {
		if len(effs) == 0 {
			if effs, err = pc.recv(ctx); err != nil {
				return nil, err
			}
			continue
		}
		ef := effs[0]
		effs = effs[1:]
		switch ef := ef.(type) {
		case channel.Send:
			if err := pc.send(ctx, ef.Msg); err != nil {
				return nil, err
			}
		case channel.TermsReceived:
			funding, _, err := channel.BuildFunding([]txbuild.Coin{coin}, key.PubKey(), ef.Terms.PayeeKey, capacity, script, feeRate)
			if err != nil {
				return nil, err
			}
			if err := w.Sign(funding, []txbuild.Coin{coin}); err != nil {
				return nil, err
			}
			more, err := p.Fund(channel.FundRequest{FundingTx: funding, PayerScript: script, RefundFee: feeRate})
			if err != nil {
				return nil, err
			}
			effs = append(effs, more...)
		case channel.BroadcastFunding:
			if err := c.Broadcast(ctx, ef.Tx); err != nil && !errors.Is(err, chain.ErrAlreadyKnown) {
				return nil, fmt.Errorf("funding: %w", err)
			}
		case channel.PeerError:
			return nil, fmt.Errorf("payee refused: %s: %s", ef.Msg.Code, ef.Msg.Reason)
		}
	}
	return pc, nil
}

func (pc *payer) send(ctx context.Context, m paywire.Message) error {
	b, err := paywire.Encode(m)
	if err != nil {
		return err
	}
	return pc.conn.Send(ctx, b)
}

// recv reads the payee's next message and returns the state machine's
// effects.
func (pc *payer) recv(ctx context.Context) ([]channel.Effect, error) {
	b, err := pc.conn.Recv(ctx)
	if err != nil {
		return nil, err
	}
	m, err := paywire.Decode(b)
	if err != nil {
		return nil, err
	}
	return pc.p.Handle(m)
}

// pay signs a payment bringing the total to paid, sends it and waits for
// its ack; it returns the round trip, signature included.
func (pc *payer) pay(ctx context.Context, paid int64) (time.Duration, error) {
	start := time.Now()
	effs, err := pc.p.Pay(paid)
	if err != nil {
		return 0, err
	}
	for _, ef := range effs {
		if s, ok := ef.(channel.Send); ok {
			if err := pc.send(ctx, s.Msg); err != nil {
				return 0, err
			}
		}
	}
	for {
		effs, err := pc.recv(ctx)
		if err != nil {
			return 0, err
		}
		for _, ef := range effs {
			switch ef := ef.(type) {
			case channel.Acked:
				return time.Since(start), nil
			case channel.PeerError:
				return 0, fmt.Errorf("payee refused: %s: %s", ef.Msg.Code, ef.Msg.Reason)
			}
		}
	}
}

// firstPayment is the least a first payment may be under the terms, and
// at least one second of call.
func (pc *payer) firstPayment() (int64, error) {
	t := pc.p.Terms()
	sec, err := channel.Owed(t.PriceSatPerMin, 1)
	if err != nil {
		return 0, err
	}
	return max(t.MinPaymentSat, sec), nil
}

// presign signs count payments in advance, from first, step apart, and
// encodes them: the throughput phase sends them without signing.
func (pc *payer) presign(first, step int64, count int) ([][]byte, error) {
	ch := pc.p.Channel()
	out := make([][]byte, count)
	for i := range out {
		v := first + int64(i)*step
		sig, err := ch.SignPayment(pc.key, v)
		if err != nil {
			return nil, err
		}
		if out[i], err = paywire.Encode(&paywire.Pay{ChannelID: ch.ID(), PaidSat: v, Sig: sig}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// secondPrice is one second of call at the terms' price.
func (pc *payer) secondPrice() (int64, error) {
	return channel.Owed(pc.p.Terms().PriceSatPerMin, 1)
}
