package wallet_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/wallet"
)

// memStorage is a Storage in memory, as the browser's IndexedDB is to the
// wallet: one document, replaced on each save.
type memStorage struct {
	doc   []byte
	saves int
}

func (m *memStorage) Load() ([]byte, error) {
	if m.doc == nil {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), m.doc...), nil
}
func (m *memStorage) Save(b []byte) error { m.doc = append([]byte(nil), b...); m.saves++; return nil }
func (m *memStorage) String() string      { return "memory" }

// TestStorage: a wallet kept in another Storage has the same mnemonic,
// encryption and keys as a file wallet restored from it; an address
// handed out is saved before it is returned.
func TestStorage(t *testing.T) {
	off := chain.Offline{Net: &chaincfg.RegressionNetParams}
	st := &memStorage{}
	if wallet.Exists(st) {
		t.Fatal("empty storage holds a wallet")
	}
	w, mnemonic, err := wallet.CreateIn(st, off, "pass phrase")
	if err != nil {
		t.Fatal(err)
	}
	if !wallet.Exists(st) || st.doc == nil {
		t.Fatal("created wallet not saved")
	}
	if _, _, err := wallet.CreateIn(st, off, ""); !errors.Is(err, wallet.ErrExists) {
		t.Fatalf("second create over a wallet: %v", err)
	}
	if _, err := wallet.OpenIn(st, off, "wrong"); !errors.Is(err, wallet.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if err := w.CheckPassphrase("wrong"); !errors.Is(err, wallet.ErrWrongPassphrase) {
		t.Fatalf("CheckPassphrase(wrong): %v", err)
	}
	if err := w.CheckPassphrase("pass phrase"); err != nil {
		t.Fatal(err)
	}
	saves := st.saves
	a1, err := w.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	if st.saves != saves+1 {
		t.Fatal("address handed out before its index was saved")
	}
	w2, err := wallet.OpenIn(st, off, "pass phrase")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := w2.NewAddress()
	if a1.String() == a2.String() {
		t.Fatal("reopened wallet handed out the same address again")
	}
	// The same mnemonic in a file wallet derives the same addresses.
	fw, err := wallet.Restore(t.Context(), filepath.Join(t.TempDir(), "w.json"), off, mnemonic, "other", false)
	if err != nil {
		t.Fatal(err)
	}
	f1, _ := fw.NewAddress()
	if f1.String() != a1.String() || fw.Mnemonic() != w2.Mnemonic() {
		t.Fatalf("file wallet from the same mnemonic: %s, want %s", f1, a1)
	}
}

// TestChannelKeysReserved: channel key indexes are written once per
// ChannelKeyBlock, never handed out twice, also across a reopen (a crash
// skips the rest of a block).
func TestChannelKeysReserved(t *testing.T) {
	off := chain.Offline{Net: &chaincfg.RegressionNetParams}
	st := &memStorage{}
	w, _, err := wallet.CreateIn(st, off, "")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	saves := st.saves
	for n := 0; n < 2*wallet.ChannelKeyBlock+1; n++ {
		k, i, err := w.ChannelKey()
		if err != nil {
			t.Fatal(err)
		}
		if seen[i] {
			t.Fatalf("index %d handed out twice", i)
		}
		seen[i] = true
		if again, _ := w.ChannelKeyAt(i); !again.PubKey().IsEqual(k.PubKey()) {
			t.Fatalf("key %d does not derive again", i)
		}
	}
	if st.saves-saves != 3 {
		t.Fatalf("%d writes for %d keys, want 3", st.saves-saves, 2*wallet.ChannelKeyBlock+1)
	}
	w2, err := wallet.OpenIn(st, off, "")
	if err != nil {
		t.Fatal(err)
	}
	_, i, err := w2.ChannelKey()
	if err != nil || seen[i] || i != 3*wallet.ChannelKeyBlock {
		t.Fatalf("after a reopen: index %d %v, want %d", i, err, 3*wallet.ChannelKeyBlock)
	}
}
