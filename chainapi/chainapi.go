// Package chainapi is the message codec of the SIP API to the Bitcoin
// network: versioned JSON requests carried in SIP MESSAGE (or SUBSCRIBE)
// bodies to sip:bitcoin@DOMAIN, with content type
// application/vnd.paysip+json, and their answers. docs/protocol.md lists
// them. It is pure: package sipserver serves it.
package chainapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxSize bounds a request (a large transaction fits).
const MaxSize = 256 * 1024

// Request types.
const (
	TypeTip       = "tip"
	TypeFee       = "fee"
	TypeCoins     = "coins"
	TypeBroadcast = "broadcast"
	TypeTxStatus  = "tx_status"
	TypeWatch     = "watch"
	TypeUnwatch   = "unwatch"
	TypeError     = "error"
	TypeNotify    = "notify"
)

// Request is one API call. Which fields are needed depends on Type.
type Request struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`      // echoed in the answer
	Target  int    `json:"target,omitempty"`  // fee: blocks
	Address string `json:"address,omitempty"` // coins, watch, unwatch
	Script  string `json:"script,omitempty"`  // coins, watch, unwatch: hex output script
	Tx      string `json:"tx,omitempty"`      // broadcast: hex
	TxID    string `json:"txid,omitempty"`    // tx_status
	Expires int    `json:"expires,omitempty"` // watch: seconds (default 600, at most 3600)
}

// Coin is an unspent output in an answer.
type Coin struct {
	TxID          string `json:"txid"`
	Vout          uint32 `json:"vout"`
	ValueSat      int64  `json:"value_sat"`
	Confirmations int64  `json:"confirmations"`
}

// Response answers a Request (also the body of a watch notification).
type Response struct {
	V             int    `json:"v"`
	Type          string `json:"type"`
	ID            string `json:"id,omitempty"`
	Height        int32  `json:"height,omitempty"`
	FeeRate       int64  `json:"fee_rate_sat_per_kvb,omitempty"`
	Coins         []Coin `json:"coins,omitempty"`
	TxID          string `json:"txid,omitempty"`
	Known         *bool  `json:"known,omitempty"`
	Confirmations *int64 `json:"confirmations,omitempty"`
	Expires       int    `json:"expires,omitempty"`
	Script        string `json:"script,omitempty"`
	Code          string `json:"code,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// ErrBadRequest is wrapped by every decoding failure.
var ErrBadRequest = errors.New("bad request")

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

func isHex(s string, n int) bool {
	if s != strings.ToLower(s) || (n > 0 && len(s) != n) {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Decode parses and checks a request.
func Decode(b []byte) (*Request, error) {
	if len(b) > MaxSize {
		return nil, bad("%d bytes > %d", len(b), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, bad("%v", err)
	}
	if dec.More() {
		return nil, bad("trailing data")
	}
	if r.V != 1 {
		return nil, bad("version %d; this server speaks 1", r.V)
	}
	if len(r.ID) > 64 {
		return nil, bad("id longer than 64")
	}
	switch r.Type {
	case TypeTip:
	case TypeFee:
		if r.Target < 0 || r.Target > 1008 {
			return nil, bad("target %d outside 0..1008", r.Target)
		}
	case TypeCoins, TypeWatch, TypeUnwatch:
		if (r.Address == "") == (r.Script == "") {
			return nil, bad("give exactly one of address and script")
		}
		if r.Script != "" && (!isHex(r.Script, 0) || len(r.Script) > 2*10_000) {
			return nil, bad("script is not hex")
		}
		if len(r.Address) > 128 {
			return nil, bad("address too long")
		}
		if r.Expires < 0 || r.Expires > 3600 {
			return nil, bad("expires %d outside 0..3600", r.Expires)
		}
	case TypeBroadcast:
		if r.Tx == "" || !isHex(r.Tx, 0) {
			return nil, bad("tx is not hex")
		}
	case TypeTxStatus:
		if !isHex(r.TxID, 64) {
			return nil, bad("txid is not 64 hex digits")
		}
	default:
		return nil, bad("unknown type %q", r.Type)
	}
	return &r, nil
}

// Encode renders a response.
func Encode(r *Response) []byte {
	r.V = 1
	b, _ := json.Marshal(r)
	return b
}
