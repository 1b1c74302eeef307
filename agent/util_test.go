package agent_test

import "github.com/btcsuite/btcd/chaincfg/chainhash"

func chainhashFrom(s string) (chainhash.Hash, error) {
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, err
	}
	return *h, nil
}
