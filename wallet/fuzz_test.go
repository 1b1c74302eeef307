package wallet

import (
	"encoding/json"
	"testing"
)

// FuzzParseState: a wallet file's contents (outside data: a user's file,
// maybe damaged) never panic the decoder, and a wrong passphrase or
// damaged ciphertext is refused, never a crash.
func FuzzParseState(f *testing.F) {
	enc, _ := seal("abandon abandon", "pass")
	enc.Iterations = 1 // keep the seed cheap to open
	real, _ := json.Marshal(fileState{Version: 1, Network: "regtest", Encrypted: enc})
	f.Add(real)
	f.Add([]byte(`{"version":1,"network":"regtest","mnemonic":"abandon","next_receive":3}`))
	f.Add([]byte(`{"version":1,"network":"regtest","encrypted":{"kdf":"pbkdf2-sha512","iterations":1,"salt":"AA==","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AA=="}}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseState(b)
		if err != nil || s.Encrypted == nil {
			return
		}
		// Cheap decryption attempts only: the fuzzer's iteration counts
		// may be huge.
		if s.Encrypted.Iterations > 1000 {
			return
		}
		s.Encrypted.open("pass")
	})
}
