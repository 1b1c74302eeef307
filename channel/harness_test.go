package channel

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/txbuild"
)

// key derives a deterministic test key from a name.
func key(name string) *btcec.PrivateKey {
	h := sha256.Sum256([]byte(name))
	k, _ := btcec.PrivKeyFromBytes(h[:])
	return k
}

// p2wpkh returns the BIP141 P2WPKH script of a key.
func p2wpkh(k *btcec.PrivateKey) []byte {
	s, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(k.PubKey().SerializeCompressed())).Script()
	return s
}

const (
	testTip          = 1000
	testPrice        = 60000 // sat/min: 1,000 sat a second
	testCapacity     = 5_000_000
	testMinChannel   = 100_000
	testMinPayment   = 1000
	testMinStep      = 1
	testFeeRate      = txbuild.FeeRate(2000) // 2 sat/vB
	testFundingCoin  = 10_000_000
	testMinLockAhead = 18
)

func testTerms() Terms {
	return Terms{
		PayeeKey: key("payee channel").PubKey(), PriceSatPerMin: testPrice, PayoutScript: p2wpkh(key("payee wallet")),
		MinChannelSat: testMinChannel, MinExpiryHeight: testTip + 24, MaxExpiryHeight: testTip + 1008,
		MinPaymentSat: testMinPayment, MinStepSat: testMinStep,
	}
}

// env drives a payer and a payee against each other in memory. Every
// message goes through the codec (Encode then Decode), and every effect is
// carried out as a real node would, with its order checked.
type env struct {
	t     *testing.T
	payer *Payer
	payee *Payee

	payerWallet *btcec.PrivateKey
	coin        txbuild.Coin
	coinTx      *wire.MsgTx

	capacity     int64
	expiry       uint32
	refundStored *PayerRecord
	broadcast    []*wire.MsgTx
	payerStore   map[int64][]byte // payer's stored states
	payeeStore   PayeeRecord      // payee's stored channel and best payment
	acked        int64
	closed       *Closed
	opened       bool
	peerErrors   []*paywire.Error
	log          []string                     // effects in order, for order checks
	before       func(side string, ef Effect) // called before each effect is carried out
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, payerWallet: key("payer wallet"), capacity: testCapacity, payerStore: map[int64][]byte{}}
	// A confirmed P2WPKH coin of the payer's wallet.
	e.coinTx = wire.NewMsgTx(2)
	e.coinTx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 7}})
	e.coinTx.AddTxOut(wire.NewTxOut(testFundingCoin, p2wpkh(e.payerWallet)))
	e.coin = txbuild.Coin{Outpoint: wire.OutPoint{Hash: e.coinTx.TxHash(), Index: 0}, Value: testFundingCoin, PkScript: p2wpkh(e.payerWallet)}
	var err error
	e.payee, err = NewPayee(testPayeeConfig())
	if err != nil {
		t.Fatal(err)
	}
	e.payee.ObserveTip(testTip)
	e.payer = NewPayer(testPayerConfig())
	e.payer.ObserveTip(testTip)
	return e
}

// testPayeeConfig is the payee of the tests: testTerms, refunds locked at
// least testMinLockAhead blocks above the tip.
func testPayeeConfig() PayeeConfig {
	return PayeeConfig{Key: key("payee channel"), Terms: testTerms(), MinLockAhead: testMinLockAhead}
}

// testPayerConfig is the payer of the tests, with limits the test terms meet.
func testPayerConfig() PayerConfig {
	return PayerConfig{Key: key("payer channel"), Agent: "test", MaxPriceSatPerMin: testPrice, MaxCapacitySat: testCapacity}
}

// testChallenge is the resume challenge of the tests.
var testChallenge = bytes.Repeat([]byte{7}, paywire.ChallengeSize)

// signFunding signs the P2WPKH inputs of a funding transaction.
func (e *env) signFunding(tx *wire.MsgTx) {
	fetch := txscript.NewCannedPrevOutputFetcher(e.coin.PkScript, e.coin.Value)
	hashes := txscript.NewTxSigHashes(tx, fetch)
	w, err := txscript.WitnessSignature(tx, hashes, 0, e.coin.Value, e.coin.PkScript, txscript.SigHashAll, e.payerWallet, true)
	if err != nil {
		e.t.Fatal(err)
	}
	tx.TxIn[0].Witness = w
}

// fundingTx builds and signs a funding transaction of capacity.
func (e *env) fundingTx(capacity int64) *wire.MsgTx {
	tx, _, err := BuildFunding([]txbuild.Coin{e.coin}, key("payer channel").PubKey(), e.payee.cfg.Terms.PayeeKey, capacity, p2wpkh(e.payerWallet), testFeeRate)
	if err != nil {
		e.t.Fatal(err)
	}
	e.signFunding(tx)
	return tx
}

// toPayee and toPayer carry a message across, through the codec.
func (e *env) wire(m paywire.Message) paywire.Message {
	b, err := paywire.Encode(m)
	if err != nil {
		e.t.Fatalf("encode %T: %v", m, err)
	}
	got, err := paywire.Decode(b)
	if err != nil {
		e.t.Fatalf("decode %s: %v", b, err)
	}
	return got
}

// by returns a function performing effects produced by side ("payer" or
// "payee"), returning the first error met along the way.
func (e *env) by(side string) func([]Effect, error) error {
	return func(effs []Effect, err error) error { return e.run(side, effs, err) }
}

func (e *env) run(side string, effs []Effect, err error) error {
	e.t.Helper()
	for _, ef := range effs {
		if e.before != nil {
			e.before(side, ef)
		}
		e.log = append(e.log, fmt.Sprintf("%s:%T", side, ef))
		switch ef := ef.(type) {
		case Send:
			m := e.wire(ef.Msg)
			e.log[len(e.log)-1] += ":" + m.Type()
			if side == "payer" {
				if rerr := e.by("payee")(e.payee.Handle(m)); rerr != nil && err == nil {
					err = rerr
				}
			} else {
				if rerr := e.by("payer")(e.payer.Handle(m)); rerr != nil && err == nil {
					err = rerr
				}
			}
		case TermsReceived:
			tx := e.fundingTx(e.capacity)
			if rerr := e.by("payer")(e.payer.Fund(FundRequest{FundingTx: tx, Vout: 0, ExpiryHeight: e.expiry, PayerScript: p2wpkh(e.payerWallet), RefundFee: testFeeRate})); rerr != nil && err == nil {
				err = rerr
			}
		case PersistRefund:
			r := ef.Record
			e.refundStored = &r
		case BroadcastFunding:
			if e.refundStored == nil {
				e.t.Fatal("funding broadcast before the refund was stored")
			}
			e.broadcast = append(e.broadcast, ef.Tx)
		case FundingReceived:
			if rerr := e.by("payee")(e.payee.FundingAccepted()); rerr != nil && err == nil {
				err = rerr
			}
		case ResumeRequested:
			if rerr := e.by("payee")(e.payee.Resume(e.payeeStore, key("payee channel"), testChallenge)); rerr != nil && err == nil {
				err = rerr
			}
		case PersistChannel:
			e.payeeStore = ef.Record
		case Opened:
			e.opened = true
		case PersistPayment:
			if side == "payer" {
				e.payerStore[ef.PaidSat] = ef.Sig
			} else {
				e.payeeStore.BestSat, e.payeeStore.BestSig = ef.PaidSat, ef.Sig
			}
		case Acked:
			if e.payeeStore.BestSat != ef.PaidSat {
				e.t.Fatalf("ack of %d reached the payer but the payee stored %d", ef.PaidSat, e.payeeStore.BestSat)
			}
			e.acked = ef.PaidSat
		case SettleRequested:
			tx, serr := e.settle()
			txid := ""
			if serr == nil {
				txid = tx.TxHash().String()
			}
			if rerr := e.by("payee")(e.payee.Settled(txid)); rerr != nil && err == nil {
				err = rerr
			}
		case Closed:
			c := ef
			e.closed = &c
		case PeerError:
			e.peerErrors = append(e.peerErrors, ef.Msg)
		default:
			e.t.Fatalf("unknown effect %T", ef)
		}
	}
	return err
}

// open runs the seed's steps 1 to 4.
func (e *env) open() {
	e.t.Helper()
	if err := e.by("payer")(e.payer.Start()); err != nil {
		e.t.Fatalf("open: %v", err)
	}
	if !e.opened || e.payer.State() != PayerOpen || e.payee.State() != PayeeOpen {
		e.t.Fatalf("not open: payer %v payee %v", e.payer.State(), e.payee.State())
	}
}

func (e *env) pay(total int64) error {
	e.t.Helper()
	return e.by("payer")(e.payer.Pay(total))
}

// settle builds the payee's settlement at testFeeRate.
func (e *env) settle() (*wire.MsgTx, error) {
	ch := e.payee.Channel()
	payout := e.payee.cfg.Terms.PayoutScript
	fee, err := ch.SettlementFee(e.payee.BestSat(), payout, testFeeRate)
	if err != nil {
		return nil, err
	}
	tx, err := e.payee.Settlement(Settlement{PayoutScript: payout, FeeSat: fee})
	if err == nil {
		e.broadcast = append(e.broadcast, tx)
	}
	return tx, err
}

// execute runs input idx of tx in btcd's script engine with the standard
// verification flags, against the previous outputs given.
func execute(tx *wire.MsgTx, idx int, prev map[wire.OutPoint]*wire.TxOut) error {
	fetch := txscript.NewMultiPrevOutFetcher(prev)
	out := prev[tx.TxIn[idx].PreviousOutPoint]
	if out == nil {
		return fmt.Errorf("no previous output for input %d", idx)
	}
	vm, err := txscript.NewEngine(out.PkScript, tx, idx, txscript.StandardVerifyFlags, nil, txscript.NewTxSigHashes(tx, fetch), out.Value, fetch)
	if err != nil {
		return err
	}
	return vm.Execute()
}

func (e *env) fundingPrev() map[wire.OutPoint]*wire.TxOut {
	ch := e.payee.Channel()
	return map[wire.OutPoint]*wire.TxOut{ch.Outpoint: wire.NewTxOut(ch.CapacitySat, ch.PkScript)}
}

// isFinal applies the consensus lock-time rule for a transaction in the
// block after tip (what the node's mempool applies).
func isFinal(tx *wire.MsgTx, tip int32) bool {
	return blockchain.IsFinalizedTransaction(btcutil.NewTx(tx), tip+1, time.Unix(1_700_000_000, 0))
}
