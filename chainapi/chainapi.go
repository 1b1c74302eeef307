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
	"strconv"
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
	// TypeSpendOf asks for the transaction spending an outpoint (a
	// channel's funding: refund or settlement watching).
	TypeSpendOf = "spend_of"
	// TypeUsed asks, for each of up to MaxScripts scripts, whether any
	// transaction ever paid it (a restored wallet's rescan, BIP44 gap
	// limit).
	TypeUsed = "used"
	// TypeTx asks for a transaction the node has (a wallet reading back
	// its own unconfirmed change).
	TypeTx = "tx"
	// TypeFaucet asks a regtest server's faucet for coins; refused on
	// every other network and when the server has no faucet.
	TypeFaucet = "faucet"
)

// MaxScripts bounds the scripts of one coins or used request.
const MaxScripts = 100

// MaxScriptLen bounds one output script (hex digits are twice this).
const MaxScriptLen = 10_000

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
	// Scripts: coins, used: up to MaxScripts hex output scripts.
	Scripts []string `json:"scripts,omitempty"`
	// Outpoint: spend_of: "txid:vout" (with Script, the output's script).
	Outpoint string `json:"outpoint,omitempty"`
	// AmountSat: faucet: how much to send (to Address or Script).
	AmountSat int64 `json:"amount_sat,omitempty"`
}

// Coin is an unspent output in an answer.
type Coin struct {
	TxID          string `json:"txid"`
	Vout          uint32 `json:"vout"`
	ValueSat      int64  `json:"value_sat"`
	Confirmations int64  `json:"confirmations"`
	// Script is the output script (hex), in answers to several scripts.
	Script   string `json:"script,omitempty"`
	Coinbase bool   `json:"coinbase,omitempty"`
}

// Spend is the transaction spending an outpoint (spend_of).
type Spend struct {
	TxID          string `json:"txid"`
	Confirmations int64  `json:"confirmations"`
	Tx            string `json:"tx,omitempty"` // hex
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
	Used          []bool `json:"used,omitempty"`  // used: one per asked script, in order
	Spend         *Spend `json:"spend,omitempty"` // spend_of: absent when unspent
	Tx            string `json:"tx,omitempty"`    // tx: hex
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
	case TypeCoins, TypeWatch, TypeUnwatch, TypeFaucet:
		if r.Type == TypeCoins && len(r.Scripts) > 0 && r.Address == "" && r.Script == "" {
			if err := checkScripts(r.Scripts); err != nil {
				return nil, err
			}
			break
		}
		if len(r.Scripts) > 0 {
			return nil, bad("give one of address, script and scripts")
		}
		if err := checkOne(r); err != nil {
			return nil, err
		}
		if r.Expires < 0 || r.Expires > 3600 {
			return nil, bad("expires %d outside 0..3600", r.Expires)
		}
		if r.Type == TypeFaucet && r.AmountSat <= 0 {
			return nil, bad("faucet: amount_sat must be positive")
		}
	case TypeUsed:
		if err := checkScripts(r.Scripts); err != nil {
			return nil, err
		}
	case TypeSpendOf:
		if err := checkOutpoint(r.Outpoint); err != nil {
			return nil, err
		}
		if r.Script == "" || !isHex(r.Script, 0) || len(r.Script) > 2*MaxScriptLen {
			return nil, bad("spend_of: script (the output's, hex) is required")
		}
	case TypeBroadcast:
		if r.Tx == "" || !isHex(r.Tx, 0) {
			return nil, bad("tx is not hex")
		}
	case TypeTxStatus, TypeTx:
		if !isHex(r.TxID, 64) {
			return nil, bad("txid is not 64 hex digits")
		}
	default:
		return nil, bad("unknown type %q", r.Type)
	}
	if err := r.checkUnused(); err != nil {
		return nil, err
	}
	return &r, nil
}

// checkOne checks the one address or script of a request.
func checkOne(r Request) error {
	if (r.Address == "") == (r.Script == "") {
		return bad("give exactly one of address and script")
	}
	if r.Script != "" && (!isHex(r.Script, 0) || len(r.Script) > 2*MaxScriptLen) {
		return bad("script is not hex")
	}
	if len(r.Address) > 128 {
		return bad("address too long")
	}
	return nil
}

// checkScripts checks a list of 1..MaxScripts hex scripts.
func checkScripts(ss []string) error {
	if len(ss) == 0 || len(ss) > MaxScripts {
		return bad("scripts: %d given, 1..%d allowed", len(ss), MaxScripts)
	}
	for i, s := range ss {
		if s == "" || !isHex(s, 0) || len(s) > 2*MaxScriptLen {
			return bad("scripts[%d] is not hex", i)
		}
	}
	return nil
}

// checkOutpoint checks "txid:vout" (64 hex digits, a decimal index).
func checkOutpoint(op string) error {
	txid, vout, ok := strings.Cut(op, ":")
	if !ok || !isHex(txid, 64) || vout == "" || len(vout) > 10 || (len(vout) > 1 && vout[0] == '0') {
		return bad("outpoint %q is not txid:vout", op)
	}
	n, err := strconv.ParseUint(vout, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != vout {
		return bad("outpoint %q is not txid:vout", op)
	}
	return nil
}

// checkUnused refuses fields the request's type does not take: a field
// that would be ignored is a client's mistake, better said than guessed.
func (r *Request) checkUnused() error {
	takes := map[string][]string{
		TypeTip: {}, TypeFee: {"target"},
		TypeCoins: {"address", "script", "scripts"}, TypeWatch: {"address", "script", "expires"},
		TypeUnwatch: {"address", "script"}, TypeBroadcast: {"tx"}, TypeTxStatus: {"txid"}, TypeTx: {"txid"},
		TypeUsed: {"scripts"}, TypeSpendOf: {"outpoint", "script"}, TypeFaucet: {"address", "script", "amount_sat"},
	}[r.Type]
	has := func(f string) bool {
		for _, t := range takes {
			if t == f {
				return true
			}
		}
		return false
	}
	for f, set := range map[string]bool{"target": r.Target != 0, "address": r.Address != "", "script": r.Script != "",
		"tx": r.Tx != "", "txid": r.TxID != "", "expires": r.Expires != 0, "scripts": r.Scripts != nil,
		"outpoint": r.Outpoint != "", "amount_sat": r.AmountSat != 0} {
		if set && !has(f) {
			return bad("%s does not take %s", r.Type, f)
		}
	}
	return nil
}

// Encode renders a response.
func Encode(r *Response) []byte {
	r.V = 1
	b, _ := json.Marshal(r)
	return b
}

// MaxResponseSize bounds an answer a client reads.
const MaxResponseSize = 1 << 20

// MaxCoins bounds the coins in one answer; a server with more for the
// asked scripts refuses with code too_many (ask fewer scripts).
const MaxCoins = 1000

// DecodeResponse parses an answer and checks what every answer must hold
// (version 1, a type, amounts and heights that are not negative, hex
// where hex is due). What an answer must say about its request (the
// scripts asked, the txid) is the client's to check.
func DecodeResponse(b []byte) (*Response, error) {
	if len(b) > MaxResponseSize {
		return nil, bad("answer of %d bytes > %d", len(b), MaxResponseSize)
	}
	var r Response
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, bad("answer: %v", err)
	}
	if dec.More() {
		return nil, bad("answer: trailing data")
	}
	if r.V != 1 || r.Type == "" {
		return nil, bad("answer: version %d, type %q", r.V, r.Type)
	}
	if r.Height < 0 || r.FeeRate < 0 || r.Expires < 0 || len(r.Coins) > MaxCoins || len(r.Used) > MaxScripts {
		return nil, bad("answer out of bounds")
	}
	if (r.Confirmations != nil && *r.Confirmations < 0) || (r.TxID != "" && !isHex(r.TxID, 64)) || !isHex(r.Script, 0) || !isHex(r.Tx, 0) {
		return nil, bad("answer: malformed txid, script, tx or confirmations")
	}
	for _, c := range r.Coins {
		if !isHex(c.TxID, 64) || c.ValueSat <= 0 || c.ValueSat > maxMoney || c.Confirmations < 0 || !isHex(c.Script, 0) {
			return nil, bad("answer: malformed coin %+v", c)
		}
	}
	if s := r.Spend; s != nil && (!isHex(s.TxID, 64) || s.Confirmations < 0 || !isHex(s.Tx, 0)) {
		return nil, bad("answer: malformed spend")
	}
	return &r, nil
}

// maxMoney is 21 million bitcoin in satoshis (no output holds more).
const maxMoney = 21_000_000 * 100_000_000
