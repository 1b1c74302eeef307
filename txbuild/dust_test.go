package txbuild

import (
	"testing"

	"github.com/btcsuite/btcd/mempool"
	"github.com/btcsuite/btcd/wire"
)

// TestIsDustIsBtcds: IsDust answers as btcd's mempool.IsDust (the node's
// relay policy) for every kind of script around each threshold.
func TestIsDustIsBtcds(t *testing.T) {
	scripts := [][]byte{
		append([]byte{0x00, 0x14}, make([]byte, 20)...),                           // P2WPKH
		append([]byte{0x00, 0x20}, make([]byte, 32)...),                           // P2WSH
		append([]byte{0x51, 0x20}, make([]byte, 32)...),                           // P2TR
		append(append([]byte{0x76, 0xa9, 0x14}, make([]byte, 20)...), 0x88, 0xac), // P2PKH
		append(append([]byte{0xa9, 0x14}, make([]byte, 20)...), 0x87),             // P2SH
		{0x6a, 0x01, 0x00}, // OP_RETURN
		{},
	}
	for _, s := range scripts {
		for v := int64(0); v < 1200; v++ {
			if got, want := IsDust(v, s), mempool.IsDust(wire.NewTxOut(v, s), DustRelayFee); got != want {
				t.Fatalf("script %x value %d: IsDust %v, btcd %v", s, v, got, want)
			}
		}
	}
}
