package channel

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// MultisigScript returns the witness script of the pool: a 2-of-2
// CHECKMULTISIG of the two keys, compressed (BIP143 standardness: P2WSH
// accepts compressed keys only) and sorted by their serialization (BIP67),
// so that both sides derive the same script from the same two keys.
//
//	OP_2 <key_low> <key_high> OP_2 OP_CHECKMULTISIG
func MultisigScript(a, b *btcec.PublicKey) ([]byte, error) {
	ka, kb := a.SerializeCompressed(), b.SerializeCompressed()
	if bytes.Equal(ka, kb) {
		return nil, fmt.Errorf("%w: payer and payee keys are the same", ErrBadKey)
	}
	if bytes.Compare(ka, kb) > 0 {
		ka, kb = kb, ka
	}
	return txscript.NewScriptBuilder().
		AddOp(txscript.OP_2).AddData(ka).AddData(kb).AddOp(txscript.OP_2).
		AddOp(txscript.OP_CHECKMULTISIG).Script()
}

// P2WSH returns the output script paying to a witness script hash
// (BIP141: OP_0 <sha256(witnessScript)>).
func P2WSH(witnessScript []byte) []byte {
	h := sha256.Sum256(witnessScript)
	s, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(h[:]).Script()
	return s
}

// multisigWitness assembles the witness spending the pool: the dummy
// element CHECKMULTISIG pops (empty, BIP147 NULLDUMMY), the two signatures
// in the order of their keys in the script, and the script itself.
func multisigWitness(witnessScript []byte, keyA *btcec.PublicKey, sigA []byte, sigB []byte) wire.TxWitness {
	// The first key in the script is the lower serialization.
	ka := keyA.SerializeCompressed()
	if bytes.Equal(witnessScript[2:35], ka) {
		return wire.TxWitness{nil, sigA, sigB, witnessScript}
	}
	return wire.TxWitness{nil, sigB, sigA, witnessScript}
}

// ParseKey parses a compressed secp256k1 public key.
func ParseKey(b []byte) (*btcec.PublicKey, error) {
	if len(b) != btcec.PubKeyBytesLenCompressed {
		return nil, fmt.Errorf("%w: want 33 compressed bytes, got %d", ErrBadKey, len(b))
	}
	k, err := btcec.ParsePubKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

// sign returns a DER signature of hash with the sighash type appended.
// btcec signs deterministically (RFC 6979) with a low S (BIP62/BIP146).
func sign(key *btcec.PrivateKey, hash []byte, ht txscript.SigHashType) []byte {
	return append(ecdsa.Sign(key, hash).Serialize(), byte(ht))
}

// verifySig checks a signature with its trailing sighash byte: the policy
// of parseSig, then ECDSA validity against the hash. This is the payee's hot
// path: it verifies the signature directly rather than running the script
// engine (a payment's check, Channel.VerifyPayment, does the same with the
// payer key's precomputed verifier).
func verifySig(sig []byte, want txscript.SigHashType, hash []byte, key *btcec.PublicKey) error {
	s, err := parseSig(sig, want)
	if err != nil {
		return err
	}
	if !s.Verify(hash, key) {
		return errNotVerified
	}
	return nil
}

// errNotVerified is a well-formed signature that is not the key's.
var errNotVerified = fmt.Errorf("%w: does not verify against the key", ErrBadSignature)

// parseSig parses a signature with its trailing sighash byte and checks
// strict DER, low S (both are relay policy, BIP66 and BIP146, so a
// signature that fails them could never be broadcast) and the exact sighash
// type wanted.
func parseSig(sig []byte, want txscript.SigHashType) (*ecdsa.Signature, error) {
	if len(sig) < 9 {
		return nil, fmt.Errorf("%w: too short", ErrBadSignature)
	}
	if ht := txscript.SigHashType(sig[len(sig)-1]); ht != want {
		return nil, fmt.Errorf("%w: got 0x%02x, want 0x%02x", ErrBadSighash, byte(ht), byte(want))
	}
	s, err := ecdsa.ParseDERSignature(sig[:len(sig)-1])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	// Serialize always emits the canonical low-S form, so a difference
	// means the peer sent a high S.
	if !bytes.Equal(s.Serialize(), sig[:len(sig)-1]) {
		return nil, fmt.Errorf("%w: not canonical (high S)", ErrBadSignature)
	}
	return s, nil
}
