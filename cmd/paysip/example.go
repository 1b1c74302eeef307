package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/txbuild"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "example", short: "run a payment channel offline: real transactions, checked in btcd's script engine, no node", data: &exampleCmd{}}
	})
}

// exampleCmd is 'paysip example'.
type exampleCmd struct {
	Seconds int64 `long:"seconds" default:"20" description:"seconds of call to pay for"`
	Price   int64 `long:"price" default:"60000" description:"price in sat/min"`
	Trace   bool  `long:"trace" description:"print every protocol message as sent"`
}

// Execute runs the example.
func (c *exampleCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	newKey := func() *btcec.PrivateKey {
		k, err := btcec.NewPrivateKey()
		if err != nil {
			panic(err)
		}
		return k
	}
	p2wpkh := func(k *btcec.PrivateKey) []byte {
		s, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(k.PubKey().SerializeCompressed())).Script()
		return s
	}
	payerWallet, payerChan, payeeWallet, payeeChan := newKey(), newKey(), newKey(), newKey()
	const tip = 1000
	rate := txbuild.FeeRate(2000)

	// An unspent P2WPKH coin of the payer (offline: a made-up previous
	// transaction; 'paysip demo' uses a real node).
	var prevHash [32]byte
	rand.Read(prevHash[:])
	coin := txbuild.Coin{Outpoint: wire.OutPoint{Hash: prevHash}, Value: 10_000_000, PkScript: p2wpkh(payerWallet)}
	prev := map[wire.OutPoint]*wire.TxOut{coin.Outpoint: wire.NewTxOut(coin.Value, coin.PkScript)}

	payee, err := channel.NewPayee(channel.PayeeConfig{Key: payeeChan, Terms: channel.Terms{
		PayeeKey: payeeChan.PubKey(), PriceSatPerMin: c.Price, PayoutScript: p2wpkh(payeeWallet),
		MinChannelSat: 100_000, MinExpiryHeight: tip + 24, MaxExpiryHeight: tip + 1008, MinPaymentSat: 1000, MinStepSat: 1,
	}, MinLockAhead: 18})
	if err != nil {
		return err
	}
	payee.ObserveTip(tip)
	payer := channel.NewPayer(channel.PayerConfig{Key: payerChan, Agent: "paysip-example", MaxPriceSatPerMin: c.Price, MaxCapacitySat: 1_000_000})
	payer.ObserveTip(tip)

	check := func(what string, tx *wire.MsgTx) error {
		fetch := txscript.NewMultiPrevOutFetcher(prev)
		for i, in := range tx.TxIn {
			out := prev[in.PreviousOutPoint]
			vm, err := txscript.NewEngine(out.PkScript, tx, i, txscript.StandardVerifyFlags, nil, txscript.NewTxSigHashes(tx, fetch), out.Value, fetch)
			if err == nil {
				err = vm.Execute()
			}
			if err != nil {
				return fmt.Errorf("%s input %d fails in the script engine: %w", what, i, err)
			}
		}
		fmt.Printf("  %-10s %s  %d vB  executes in btcd's script engine\n", what, tx.TxHash(), txbuild.VSize(tx))
		return nil
	}

	// The link: effects of one side performed in order, messages carried
	// through the codec to the other side.
	var run func(from string, effs []channel.Effect, err error) error
	drive := func(from string) func([]channel.Effect, error) error {
		return func(effs []channel.Effect, err error) error { return run(from, effs, err) }
	}
	run = func(from string, effs []channel.Effect, err error) error {
		if err != nil {
			return err
		}
		for _, ef := range effs {
			switch ef := ef.(type) {
			case channel.Send:
				b, err := paywire.Encode(ef.Msg)
				if err != nil {
					return err
				}
				if c.Trace {
					fmt.Printf("  %s -> %s\n", from, b)
				}
				m, err := paywire.Decode(b)
				if err != nil {
					return err
				}
				if from == "payer" {
					err = drive("payee")(payee.Handle(m))
				} else {
					err = drive("payer")(payer.Handle(m))
				}
				if err != nil {
					return err
				}
			case channel.TermsReceived:
				fmt.Printf("terms: %d sat/min, payee key %x\n", ef.Terms.PriceSatPerMin, ef.Terms.PayeeKey.SerializeCompressed())
				tx, fee, err := channel.BuildFunding([]txbuild.Coin{coin}, payerChan.PubKey(), ef.Terms.PayeeKey, 1_000_000, p2wpkh(payerWallet), rate)
				if err != nil {
					return err
				}
				w, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, txscript.NewMultiPrevOutFetcher(prev)), 0, coin.Value, coin.PkScript, txscript.SigHashAll, payerWallet, true)
				if err != nil {
					return err
				}
				tx.TxIn[0].Witness = w
				fmt.Printf("funding prepared: 1,000,000 sat pool, fee %d sat (not sent yet)\n", fee)
				if err := drive("payer")(payer.Fund(channel.FundRequest{FundingTx: tx, PayerScript: p2wpkh(payerWallet), RefundFee: rate})); err != nil {
					return err
				}
			case channel.PersistRefund:
				fmt.Println("refund signed by the payee and kept by the payer")
			case channel.BroadcastFunding:
				if err := check("funding", ef.Tx); err != nil {
					return err
				}
				for i, out := range ef.Tx.TxOut {
					prev[wire.OutPoint{Hash: ef.Tx.TxHash(), Index: uint32(i)}] = out
				}
			case channel.FundingReceived:
				if err := drive("payee")(payee.FundingAccepted()); err != nil {
					return err
				}
			case channel.Opened:
				if from == "payer" {
					fmt.Printf("channel %s open\n", ef.Channel.ID())
				}
			case channel.SettleRequested:
				ch := payee.Channel()
				fee, err := ch.SettlementFee(ef.PaidSat, p2wpkh(payeeWallet), rate)
				if err != nil {
					return err
				}
				tx, err := payee.Settlement(channel.Settlement{PayoutScript: p2wpkh(payeeWallet), FeeSat: fee})
				if err != nil {
					return err
				}
				if err := check("settlement", tx); err != nil {
					return err
				}
				fmt.Printf("  payee gets %d sat (paid %d, fee %d), payer change %d sat\n", tx.TxOut[1].Value, ef.PaidSat, fee, tx.TxOut[0].Value)
				if err := drive("payee")(payee.Settled(tx.TxHash().String())); err != nil {
					return err
				}
			case channel.PeerError:
				return fmt.Errorf("peer error %s: %s", ef.Msg.Code, ef.Msg.Reason)
			}
		}
		return nil
	}

	if err := drive("payer")(payer.Start()); err != nil {
		return err
	}
	if err := check("refund", payer.RefundTx()); err != nil {
		return err
	}
	fmt.Printf("  refund locked until height %d\n", payer.RefundTx().LockTime)
	for s := int64(1); s <= c.Seconds; s++ {
		owed, err := channel.Owed(c.Price, s)
		if err != nil {
			return err
		}
		if err := drive("payer")(payer.Pay(owed)); err != nil {
			return err
		}
		if !c.Trace {
			fmt.Printf("\r  second %3d: paid %7d sat", s, payer.AckedSat())
		}
	}
	fmt.Println()
	if err := drive("payer")(payer.Close("hangup")); err != nil {
		return err
	}
	summary, _ := json.Marshal(map[string]any{"seconds": c.Seconds, "price_sat_per_min": c.Price, "paid_sat": payer.AckedSat()})
	fmt.Fprintln(os.Stdout, string(summary))
	return nil
}
