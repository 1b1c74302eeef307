package paywire

import "encoding/hex"

// decodePayFast decodes the common form of a pay message, the one message
// a payee decodes many times a second, in one pass without reflection:
// a JSON object (RFC 8259 §4) holding exactly the keys "v", "type",
// "channel_id", "paid_sat" and "sig", once each, in any order, with
// a supported version, the type "pay", strings of printable ASCII without
// escapes, a plain integer amount (§6: no fraction, no exponent, at most
// 18 digits) and lower-case hex. Anything else (other keys, escapes,
// duplicates, nulls, other numbers) returns false, and Decode takes its
// general path, which gives every error its reason. What this accepts,
// the general path decodes to the same message (FuzzDecodePayFast checks
// it); validate still runs after either.
func decodePayFast(b []byte) (*Pay, bool) {
	p := fastParser{b: b}
	if !p.byte('{') {
		return nil, false
	}
	var m Pay
	var seen uint8
	for {
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return nil, false
		}
		var bit uint8
		switch string(key) {
		case "v":
			bit = 1
			v, ok := p.int()
			if !ok || !Supports(int(v)) {
				return nil, false
			}
			m.V = int(v)
		case "type":
			bit = 2
			t, ok := p.str()
			if !ok || string(t) != TypePay {
				return nil, false
			}
			m.Typ = TypePay
		case "channel_id":
			bit = 4
			id, ok := p.str()
			if !ok {
				return nil, false
			}
			m.ChannelID = string(id)
		case "paid_sat":
			bit = 8
			if m.PaidSat, ok = p.int(); !ok {
				return nil, false
			}
		case "sig":
			bit = 16
			s, ok := p.str()
			if !ok || !lowerHex(s) || len(s)%2 != 0 {
				return nil, false
			}
			m.Sig = make([]byte, len(s)/2)
			if _, err := hex.Decode(m.Sig, s); err != nil {
				return nil, false
			}
		default:
			return nil, false
		}
		if seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		if p.byte(',') {
			continue
		}
		if !p.byte('}') {
			return nil, false
		}
		break
	}
	p.space()
	if p.i != len(b) || seen != 31 {
		return nil, false
	}
	return &m, true
}

// fastParser reads the few JSON tokens decodePayFast accepts.
type fastParser struct {
	b []byte
	i int
}

// space skips JSON whitespace (RFC 8259 §2).
func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after optional whitespace.
func (p *fastParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes; the result
// aliases the input.
func (p *fastParser) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// int reads -?(0|[1-9][0-9]*) of at most 18 digits (so it fits an int64),
// not followed by a fraction or an exponent.
func (p *fastParser) int() (int64, bool) {
	p.space()
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
	}
	start := p.i
	var v int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int64(p.b[p.i]-'0')
		p.i++
		if p.i-start > 18 {
			return 0, false
		}
	}
	n := p.i - start
	if n == 0 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

func lowerHex(s []byte) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
