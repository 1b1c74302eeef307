// Package wallet is paysip's non-custodial on-chain wallet: an HD wallet
// from a BIP39 mnemonic (BIP32 keys, BIP84 native segwit P2WPKH addresses),
// stored in one file (or any Storage: the browser keeps it in IndexedDB),
// encrypted at rest when a passphrase is set.
//
// Paths (coin type from the network: 0 mainnet, 1 elsewhere):
//
//	m/84'/coin'/0'/0/i    receive addresses (BIP84)
//	m/84'/coin'/0'/1/i    change addresses
//	m/1017'/coin'/0'/0/i  channel keys (the 2-of-2 keys of payer and payee)
//
// Every key comes from the seed, so the mnemonic restores everything the
// wallet ever used. Refunds, payer change and settlements pay to the
// wallet's own P2WPKH addresses, so they are swept into the balance with
// no further transaction.
package wallet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/cosmos/go-bip39"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/sat"
	"github.com/paysip/paysip/txbuild"
)

// GapLimit is how many unused addresses past the last used one are
// watched on each branch (BIP44's gap limit).
const GapLimit = 20

// channelPurpose is the derivation purpose of channel keys (as lnd's).
const channelPurpose = 1017

// Errors.
var (
	ErrBadMnemonic     = errors.New("invalid BIP39 mnemonic")
	ErrNetworkMismatch = errors.New("wallet belongs to another network")
)

// Wallet is an open wallet. It is safe for concurrent use.
type Wallet struct {
	store  Storage
	params *chaincfg.Params
	chain  chain.Chain

	mu       sync.Mutex
	state    *fileState
	receive  *hdkeychain.ExtendedKey // m/84'/coin'/0'/0
	change   *hdkeychain.ExtendedKey // m/84'/coin'/0'/1
	channels *hdkeychain.ExtendedKey // m/1017'/coin'/0'/0
	keys     map[string]*btcec.PrivateKey
	mnemonic string
	// nextChannel is the next channel key index handed out; indexes up
	// to state.NextChannelKey are reserved (ChannelKeyBlock). An opened
	// wallet starts after everything reserved before.
	nextChannel uint32
}

// Create makes a new wallet file at path with a fresh 24-word mnemonic,
// which it returns for the user to write down. An empty passphrase stores
// the mnemonic unencrypted. It refuses to overwrite an existing file.
func Create(path string, c chain.Chain, passphrase string) (*Wallet, string, error) {
	return CreateIn(File(path), c, passphrase)
}

// CreateIn is Create on any Storage (the browser's IndexedDB).
func CreateIn(st Storage, c chain.Chain, passphrase string) (*Wallet, string, error) {
	entropy, err := bip39.NewEntropy(256)
	if err != nil {
		return nil, "", err
	}
	mnemonic, err := bip39.NewMnemonic(entropy)
	if err != nil {
		return nil, "", err
	}
	w, err := RestoreIn(context.Background(), st, c, mnemonic, passphrase, false)
	return w, mnemonic, err
}

// Restore makes a wallet file from an existing mnemonic. With scan set it
// looks for used addresses on the chain (gap limit) so the coins of the
// old wallet are found.
func Restore(ctx context.Context, path string, c chain.Chain, mnemonic, passphrase string, scan bool) (*Wallet, error) {
	return RestoreIn(ctx, File(path), c, mnemonic, passphrase, scan)
}

// RestoreIn is Restore on any Storage.
func RestoreIn(ctx context.Context, st Storage, c chain.Chain, mnemonic, passphrase string, scan bool) (*Wallet, error) {
	mnemonic = strings.Join(strings.Fields(mnemonic), " ")
	if !bip39.IsMnemonicValid(mnemonic) {
		return nil, ErrBadMnemonic
	}
	if exists(st) {
		return nil, fmt.Errorf("%w: %s", ErrExists, st)
	}
	s := &fileState{Version: fileVersion, Network: c.Params().Name}
	if passphrase == "" {
		s.Mnemonic = mnemonic
	} else {
		enc, err := seal(mnemonic, passphrase)
		if err != nil {
			return nil, err
		}
		s.Encrypted = enc
	}
	w, err := load(st, c, s, mnemonic)
	if err != nil {
		return nil, err
	}
	if scan {
		if err := w.rescan(ctx); err != nil {
			return nil, err
		}
	}
	if err := writeState(st, s); err != nil {
		return nil, err
	}
	return w, nil
}

// Open loads a wallet file.
func Open(path string, c chain.Chain, passphrase string) (*Wallet, error) {
	return OpenIn(File(path), c, passphrase)
}

// Exists reports whether st holds a wallet.
func Exists(st Storage) bool { return exists(st) }

// OpenIn loads a wallet from any Storage.
func OpenIn(st Storage, c chain.Chain, passphrase string) (*Wallet, error) {
	s, err := readState(st)
	if err != nil {
		return nil, err
	}
	mnemonic := s.Mnemonic
	if s.Encrypted != nil {
		if mnemonic, err = s.Encrypted.open(passphrase); err != nil {
			return nil, err
		}
	}
	return load(st, c, s, mnemonic)
}

// CheckPassphrase reports whether passphrase opens the wallet's stored
// mnemonic (ErrWrongPassphrase if not); an unencrypted wallet takes "".
func (w *Wallet) CheckPassphrase(passphrase string) error {
	w.mu.Lock()
	enc := w.state.Encrypted
	w.mu.Unlock()
	if enc == nil {
		if passphrase != "" {
			return ErrWrongPassphrase
		}
		return nil
	}
	_, err := enc.open(passphrase)
	return err
}

// Encrypted reports whether the stored mnemonic is encrypted under a
// passphrase.
func (w *Wallet) Encrypted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state.Encrypted != nil
}

// OpenOrCreate opens the wallet at path, creating it (and returning its new
// mnemonic) if there is none.
func OpenOrCreate(path string, c chain.Chain, passphrase string) (*Wallet, string, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return Create(path, c, passphrase)
	}
	w, err := Open(path, c, passphrase)
	return w, "", err
}

func load(st Storage, c chain.Chain, s *fileState, mnemonic string) (*Wallet, error) {
	if s.Network != c.Params().Name {
		return nil, fmt.Errorf("%w: wallet is for %s, node is %s", ErrNetworkMismatch, s.Network, c.Params().Name)
	}
	seed, err := bip39.NewSeedWithErrorChecking(mnemonic, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMnemonic, err)
	}
	master, err := hdkeychain.NewMaster(seed, c.Params())
	if err != nil {
		return nil, err
	}
	coin := c.Params().HDCoinType
	h := uint32(hdkeychain.HardenedKeyStart)
	derive := func(path ...uint32) (*hdkeychain.ExtendedKey, error) {
		k := master
		for _, i := range path {
			var err error
			if k, err = k.Derive(i); err != nil {
				return nil, err
			}
		}
		return k, nil
	}
	w := &Wallet{store: st, params: c.Params(), chain: c, state: s, keys: map[string]*btcec.PrivateKey{}, mnemonic: mnemonic,
		nextChannel: s.NextChannelKey}
	if w.receive, err = derive(h+84, h+coin, h+0, 0); err != nil {
		return nil, err
	}
	if w.change, err = derive(h+84, h+coin, h+0, 1); err != nil {
		return nil, err
	}
	if w.channels, err = derive(h+channelPurpose, h+coin, h+0, 0); err != nil {
		return nil, err
	}
	return w, nil
}

// Mnemonic returns the wallet's BIP39 mnemonic: the backup of everything.
func (w *Wallet) Mnemonic() string { return w.mnemonic }

// Params returns the wallet's network.
func (w *Wallet) Params() *chaincfg.Params { return w.params }

// key derives child i of branch and remembers its script for signing.
func (w *Wallet) key(branch *hdkeychain.ExtendedKey, i uint32) (*btcec.PrivateKey, []byte, error) {
	k, err := branch.Derive(i)
	if err != nil {
		return nil, nil, err
	}
	priv, err := k.ECPrivKey()
	if err != nil {
		return nil, nil, err
	}
	script := P2WPKH(priv.PubKey())
	w.keys[string(script)] = priv
	return priv, script, nil
}

// P2WPKH returns the BIP141 P2WPKH output script of a key.
func P2WPKH(k *btcec.PublicKey) []byte {
	s, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(k.SerializeCompressed())).Script()
	return s
}

// Address renders an output script as an address of the wallet's network.
func (w *Wallet) Address(script []byte) (btcutil.Address, error) {
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, w.params)
	if err != nil || len(addrs) != 1 {
		return nil, fmt.Errorf("script %x has no address", script)
	}
	return addrs[0], nil
}

// NewAddress returns the next unused receive address.
func (w *Wallet) NewAddress() (btcutil.Address, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	script, err := w.next(&w.state.NextReceive, w.receive)
	if err != nil {
		return nil, err
	}
	return w.Address(script)
}

// NewScript returns the script of the next unused receive address (for
// refunds, payer change and settlement payouts).
func (w *Wallet) NewScript() ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next(&w.state.NextReceive, w.receive)
}

// next hands out index *counter of branch, persisting the new counter
// first so an index is never handed out twice.
func (w *Wallet) next(counter *uint32, branch *hdkeychain.ExtendedKey) ([]byte, error) {
	i := *counter
	_, script, err := w.key(branch, i)
	if err != nil {
		return nil, err
	}
	*counter = i + 1
	if err := writeState(w.store, w.state); err != nil {
		*counter = i
		return nil, err
	}
	return script, nil
}

// ChannelKeyBlock is how many channel key indexes are reserved by one
// write of the wallet's state: a payee opening many channels writes (and
// fsyncs) once per block, not once per channel. A crash forgets at most
// the rest of a block: those indexes are skipped, never handed out twice
// (each channel stores its own index, so nothing needs to find them).
const ChannelKeyBlock = 16

// ChannelKey hands out the next channel key and its index; the index is
// stored with the channel so the key can be derived again. Indexes are
// reserved ChannelKeyBlock at a time, durably, before one is handed out.
func (w *Wallet) ChannelKey() (*btcec.PrivateKey, uint32, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := w.nextChannel
	k, err := w.ChannelKeyAt(i)
	if err != nil {
		return nil, 0, err
	}
	if i >= w.state.NextChannelKey {
		reserved := w.state.NextChannelKey
		w.state.NextChannelKey = i + ChannelKeyBlock
		if err := writeState(w.store, w.state); err != nil {
			w.state.NextChannelKey = reserved
			return nil, 0, err
		}
	}
	w.nextChannel = i + 1
	return k, i, nil
}

// ChannelKeyAt derives channel key i.
func (w *Wallet) ChannelKeyAt(i uint32) (*btcec.PrivateKey, error) {
	k, err := w.channels.Derive(i)
	if err != nil {
		return nil, err
	}
	return k.ECPrivKey()
}

// scripts lists the watched scripts: every handed-out address of both
// branches plus GapLimit ahead.
func (w *Wallet) scripts() ([][]byte, error) {
	var all [][]byte
	for _, b := range []struct {
		branch *hdkeychain.ExtendedKey
		n      uint32
	}{{w.receive, w.state.NextReceive + GapLimit}, {w.change, w.state.NextChange + GapLimit}} {
		for i := uint32(0); i < b.n; i++ {
			_, s, err := w.key(b.branch, i)
			if err != nil {
				return nil, err
			}
			all = append(all, s)
		}
	}
	return all, nil
}

// rescan advances the address counters past every used address (gap
// limit), for a restored wallet.
func (w *Wallet) rescan(ctx context.Context) error {
	for _, b := range []struct {
		branch  *hdkeychain.ExtendedKey
		counter *uint32
	}{{w.receive, &w.state.NextReceive}, {w.change, &w.state.NextChange}} {
		for start := uint32(0); ; start += GapLimit {
			scripts := make([][]byte, GapLimit)
			for j := range scripts {
				var err error
				if _, scripts[j], err = w.key(b.branch, start+uint32(j)); err != nil {
					return err
				}
			}
			used, err := w.chain.Used(ctx, scripts)
			if err != nil {
				return err
			}
			any := false
			for j, u := range used {
				if u {
					any = true
					*b.counter = start + uint32(j) + 1
				}
			}
			if !any {
				break
			}
		}
	}
	return nil
}

// Coins returns the wallet's unspent outputs with at least minConf
// confirmations (0 includes the mempool).
func (w *Wallet) Coins(ctx context.Context, minConf int64) ([]chain.Utxo, error) {
	w.mu.Lock()
	scripts, err := w.scripts()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	all, err := w.chain.Coins(ctx, scripts)
	if err != nil {
		return nil, err
	}
	coins := all[:0]
	for _, c := range all {
		if c.Coinbase && c.Confirmations < int64(w.params.CoinbaseMaturity) {
			continue // immature coinbase: the node refuses to spend it
		}
		if c.Confirmations >= minConf {
			coins = append(coins, c)
		}
	}
	return coins, nil
}

// Balance is a wallet's money in satoshis.
type Balance struct {
	Confirmed   int64 `json:"confirmed_sat"`
	Unconfirmed int64 `json:"unconfirmed_sat"`
}

// Balance sums the wallet's coins.
func (w *Wallet) Balance(ctx context.Context) (Balance, error) {
	coins, err := w.Coins(ctx, 0)
	if err != nil {
		return Balance{}, err
	}
	var b Balance
	for _, c := range coins {
		if c.Confirmations > 0 {
			b.Confirmed += c.Value
		} else {
			b.Unconfirmed += c.Value
		}
	}
	return b, nil
}

// changeScript hands out the next change address.
func (w *Wallet) changeScript() ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next(&w.state.NextChange, w.change)
}

// txSource is what a chain backend offers beyond chain.Chain to read a
// transaction back (btcdrpc.Client does).
type txSource interface {
	Tx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error)
}

// SpendableCoins are the coins the wallet spends: confirmed ones, and its
// own unconfirmed change. An unconfirmed output is the wallet's own change
// when it pays one of the wallet's change addresses and every input of its
// transaction spends one of the wallet's own coins: nobody else signed
// that transaction, so nobody else can double-spend it and it cannot
// vanish. Unconfirmed coins from anyone else (a faucet, a payee's
// settlement, a refund racing a settlement) wait for a confirmation.
// Without a backend that can read transactions back, only confirmed coins.
func (w *Wallet) SpendableCoins(ctx context.Context) ([]txbuild.Coin, error) {
	coins, err := w.Coins(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []txbuild.Coin
	var own map[string]bool
	parents := map[chainhash.Hash]bool{}
	for _, c := range coins {
		if c.Confirmations > 0 {
			out = append(out, c.Coin)
			continue
		}
		src, ok := w.chain.(txSource)
		if !ok {
			continue
		}
		if own == nil {
			if own, err = w.ownScripts(); err != nil {
				return nil, err
			}
		}
		if !own["change:"+string(c.PkScript)] {
			continue
		}
		h := c.Outpoint.Hash
		mine, seen := parents[h]
		if !seen {
			tx, err := src.Tx(ctx, h)
			if err != nil {
				return nil, fmt.Errorf("reading unconfirmed %v: %w", h, err)
			}
			mine = len(tx.TxIn) > 0
			for _, in := range tx.TxIn {
				prev, err := src.Tx(ctx, in.PreviousOutPoint.Hash)
				if err != nil {
					return nil, fmt.Errorf("reading %v: %w", in.PreviousOutPoint.Hash, err)
				}
				if int(in.PreviousOutPoint.Index) >= len(prev.TxOut) || !own[string(prev.TxOut[in.PreviousOutPoint.Index].PkScript)] {
					mine = false
					break
				}
			}
			parents[h] = mine
		}
		if mine {
			out = append(out, c.Coin)
		}
	}
	return out, nil
}

// ownScripts is the set of the wallet's scripts (both branches), with the
// change branch's also under "change:"+script.
func (w *Wallet) ownScripts() (map[string]bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	all, err := w.scripts()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, s := range all {
		set[string(s)] = true
	}
	for i := uint32(0); i < w.state.NextChange+GapLimit; i++ {
		_, s, err := w.key(w.change, i)
		if err != nil {
			return nil, err
		}
		set["change:"+string(s)] = true
	}
	return set, nil
}

// Spendable is the most the wallet can lock in one output at rate: its
// spendable coins less the fee of a transaction spending them all into
// one P2WSH output plus change.
func (w *Wallet) Spendable(ctx context.Context, rate txbuild.FeeRate) (int64, error) {
	coins, err := w.SpendableCoins(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, c := range coins {
		if total, err = sat.Add(total, c.Value); err != nil {
			return 0, err
		}
	}
	// BIP141 sizes: 10.5 vB of overhead, 68 vB a P2WPKH input, 43 vB a
	// P2WSH output, 31 vB a P2WPKH change output.
	fee, err := rate.FeeFor(11 + 68*int64(len(coins)) + 43 + 31)
	if err != nil {
		return 0, err
	}
	if total <= fee {
		return 0, nil
	}
	return total - fee, nil
}

// build selects spendable coins (SpendableCoins) for outputs, adds change,
// and signs.
func (w *Wallet) build(ctx context.Context, outputs []*wire.TxOut, rate txbuild.FeeRate) (*wire.MsgTx, int64, error) {
	plain, err := w.SpendableCoins(ctx)
	if err != nil {
		return nil, 0, err
	}
	change, err := w.changeScript()
	if err != nil {
		return nil, 0, err
	}
	tx, fee, _, used, err := txbuild.Select(plain, outputs, change, rate)
	if err != nil {
		return nil, 0, err
	}
	if err := w.Sign(tx, used); err != nil {
		return nil, 0, err
	}
	return tx, fee, nil
}

// Sign signs every input of tx that spends one of coins (P2WPKH,
// SIGHASH_ALL, BIP143).
func (w *Wallet) Sign(tx *wire.MsgTx, coins []txbuild.Coin) error {
	prev := map[wire.OutPoint]*wire.TxOut{}
	for _, c := range coins {
		prev[c.Outpoint] = wire.NewTxOut(c.Value, c.PkScript)
	}
	fetch := txscript.NewMultiPrevOutFetcher(prev)
	hashes := txscript.NewTxSigHashes(tx, fetch)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, in := range tx.TxIn {
		out := prev[in.PreviousOutPoint]
		if out == nil {
			continue
		}
		key := w.keys[string(out.PkScript)]
		if key == nil {
			return fmt.Errorf("no key for coin %v", in.PreviousOutPoint)
		}
		wit, err := txscript.WitnessSignature(tx, hashes, i, out.Value, out.PkScript, txscript.SigHashAll, key, true)
		if err != nil {
			return err
		}
		in.Witness = wit
	}
	return nil
}

// Send pays amount to addr at rate and broadcasts.
func (w *Wallet) Send(ctx context.Context, addr btcutil.Address, amount int64, rate txbuild.FeeRate) (*wire.MsgTx, error) {
	if !addr.IsForNet(w.params) {
		return nil, fmt.Errorf("%w: address %s", ErrNetworkMismatch, addr)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, err
	}
	tx, _, err := w.build(ctx, []*wire.TxOut{wire.NewTxOut(amount, script)}, rate)
	if err != nil {
		return nil, err
	}
	return tx, w.chain.Broadcast(ctx, tx)
}

// FundChannel builds and signs (but does not broadcast) a funding
// transaction paying capacity to the pool of the two keys; the pool is
// output 0. It returns the fee paid.
func (w *Wallet) FundChannel(ctx context.Context, payer, payee *btcec.PublicKey, capacity int64, rate txbuild.FeeRate) (*wire.MsgTx, int64, error) {
	ws, err := channel.MultisigScript(payer, payee)
	if err != nil {
		return nil, 0, err
	}
	return w.build(ctx, []*wire.TxOut{wire.NewTxOut(capacity, channel.P2WSH(ws))}, rate)
}
