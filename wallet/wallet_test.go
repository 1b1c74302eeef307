package wallet_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

var ctx = context.Background()

func TestFundSendRestore(t *testing.T) {
	t.Parallel()
	env := regtest.New(t)
	w, mnemonic := env.NewWallet("alice", "correct horse")
	addr, err := w.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	env.Fund(addr, 1_000_000)
	addr2, _ := w.NewAddress()
	env.Fund(addr2, 250_000)
	if got := env.Confirmed(w); got != 1_250_000 {
		t.Fatalf("balance %d, want 1,250,000", got)
	}

	// Spending: the faucet gets 300,000 back; the fee is what is missing.
	back, _ := env.Faucet.NewAddress()
	tx, err := w.Send(ctx, back, 300_000, regtest.FeeRate)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.Balance(ctx)
	// Largest coin first: the 1,000,000 coin pays, the 250,000 one stays.
	fee := 1_250_000 - 300_000 - b.Unconfirmed - b.Confirmed
	if b.Confirmed != 250_000 || fee != int64(txbuild.VSize(tx))*2 {
		t.Fatalf("after send: %+v, fee %d for %d vB", b, fee, txbuild.VSize(tx))
	}
	env.Mine(1)

	// Insufficient funds: a typed error with the amounts.
	_, err = w.Send(ctx, back, 5_000_000, regtest.FeeRate)
	var short *txbuild.InsufficientFundsError
	if !errors.As(err, &short) || short.Have != 1_250_000-300_000-fee || short.Need <= 5_000_000 {
		t.Fatalf("got %v", err)
	}

	// Restore from the mnemonic into a new file: same coins.
	r, err := wallet.Restore(ctx, filepath.Join(env.Dir, "alice-restored.json"), env.Chain, mnemonic, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := env.Confirmed(r), env.Confirmed(w); got != want || got == 0 {
		t.Fatalf("restored balance %d, original %d", got, want)
	}

	// Encrypted at rest: the wrong passphrase opens nothing.
	if _, err := wallet.Open(filepath.Join(env.Dir, "alice.json"), env.Chain, "wrong"); !errors.Is(err, wallet.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := wallet.Open(filepath.Join(env.Dir, "alice.json"), env.Chain, "correct horse"); err != nil {
		t.Fatal(err)
	}
	// Creating over an existing wallet is refused.
	if _, _, err := wallet.Create(filepath.Join(env.Dir, "alice.json"), env.Chain, ""); !errors.Is(err, wallet.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
}

// TestPSBTFundsChannel: another wallet funds the pool through a PSBT; the
// result is a funding transaction the payer can use and the node accepts.
func TestPSBTFundsChannel(t *testing.T) {
	t.Parallel()
	env := regtest.New(t)
	payer, _ := env.NewWallet("payer", "")
	other, _ := env.NewWallet("other", "")
	a, _ := other.NewAddress()
	env.Fund(a, 2_000_000)

	payerKey, _, _ := payer.ChannelKey()
	payeeKey, _ := btcec.NewPrivateKey()
	ws, _ := channel.MultisigScript(payerKey.PubKey(), payeeKey.PubKey())
	pool := channel.P2WSH(ws)

	unsigned, err := wallet.ExportFundingPSBT(pool, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	funded, err := other.FundPSBT(ctx, unsigned, regtest.FeeRate)
	if err != nil {
		t.Fatal(err)
	}
	// Importing before signing is refused.
	if _, _, err := wallet.ImportFundingPSBT(funded, pool, 1_000_000); !errors.Is(err, wallet.ErrPSBT) {
		t.Fatalf("unsigned import: %v", err)
	}
	signed, err := other.SignPSBT(funded)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := wallet.ImportFundingPSBT(signed, pool, 999_999); !errors.Is(err, wallet.ErrPSBT) {
		t.Fatalf("wrong capacity: %v", err)
	}
	tx, vout, err := wallet.ImportFundingPSBT(signed, pool, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Chain.Broadcast(ctx, tx); err != nil {
		t.Fatal(err)
	}
	env.Mine(1)
	st, err := env.Chain.TxStatus(ctx, tx.TxHash())
	if err != nil || st.Confirmations != 1 || tx.TxOut[vout].Value != 1_000_000 {
		t.Fatalf("funding status %+v, %v", st, err)
	}
}

// TestSpendsOwnUnconfirmedChange: with nothing mined, a wallet spends the
// change of its own unconfirmed transaction (a second call right after the
// first), but not an unconfirmed coin someone else sent it.
func TestSpendsOwnUnconfirmedChange(t *testing.T) {
	t.Parallel()
	env := regtest.New(t)
	alice, _ := env.NewWallet("alice", "")
	bob, _ := env.NewWallet("bob", "")
	a, _ := alice.NewAddress()
	env.Fund(a, 1_000_000)
	b, _ := bob.NewAddress()
	if _, err := alice.Send(ctx, b, 100_000, regtest.FeeRate); err != nil {
		t.Fatal(err)
	}
	// Alice's only coin is now her unconfirmed change.
	spendable, err := alice.Spendable(ctx, regtest.FeeRate)
	if err != nil || spendable < 890_000 || spendable > 900_000 {
		t.Fatalf("alice can spend %d (%v), want her change less a fee", spendable, err)
	}
	if _, err := alice.Send(ctx, b, 200_000, regtest.FeeRate); err != nil {
		t.Fatalf("spending own unconfirmed change: %v", err)
	}
	// Bob's unconfirmed coins are alice's: he waits for a block.
	back, _ := env.Faucet.NewAddress()
	var short *txbuild.InsufficientFundsError
	if _, err := bob.Send(ctx, back, 50_000, regtest.FeeRate); !errors.As(err, &short) {
		t.Fatalf("bob spent an unconfirmed coin he did not make: %v", err)
	}
	if s, _ := bob.Spendable(ctx, regtest.FeeRate); s != 0 {
		t.Fatalf("bob can spend %d before a block", s)
	}
	env.Mine(1)
	if _, err := bob.Send(ctx, back, 50_000, regtest.FeeRate); err != nil {
		t.Fatalf("after a block: %v", err)
	}
}
