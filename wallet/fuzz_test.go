package wallet

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseState: a wallet file's contents (outside data: a user's file,
// maybe damaged) never panic the decoder; what it accepts holds exactly
// one of a mnemonic and an encrypted one, and is written back (as
// writeState does) to a file that reads the same (round trip); a wrong
// passphrase or damaged ciphertext is refused, never a crash.
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
		if err != nil {
			if s != nil {
				t.Fatal("state returned with an error")
			}
			return
		}
		if (s.Mnemonic == "") == (s.Encrypted == nil) || s.Version != fileVersion {
			t.Fatalf("accepted %+v", s)
		}
		again, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		s2, err := parseState(again)
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, s, s2)
		}
		if s.Encrypted == nil {
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
