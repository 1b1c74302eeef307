// Package sipext is the vocabulary of paysip's SIP extension, in one
// place for every side of it (Go agents, the server, a browser's
// WebAssembly build): the option tag a caller that can pay announces, the
// 402 Payment Required answer's Paysip-Terms header, the +paysip.*
// Contact parameters of the directory (a contact registered at
// sip:directory@DOMAIN whose parameters carry its offer), the directory's
// JSON listing, and the Reason header of a payee that hangs up on a late
// payer. docs/protocol.md describes them. It depends on the standard
// library only, so it compiles everywhere (GOOS=js GOARCH=wasm included).
package sipext

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// OptionTag is the option tag (RFC 3261 section 19.2) of a caller that can
// pay: "Supported: paysip". Without it a priced address answers 402.
const OptionTag = "paysip"

// TermsHeader is the header of a 402 answer carrying the price (Terms).
const TermsHeader = "Paysip-Terms"

// DirectoryUser is the user part of the directory's address,
// sip:directory@DOMAIN.
const DirectoryUser = "directory"

// The Contact parameters (RFC 3840 feature tags) of a directory listing.
const (
	ParamAOR        = "+paysip.aor"         // the priced address, quoted
	ParamPrice      = "+paysip.price"       // sat/min
	ParamName       = "+paysip.name"        // display name, quoted
	ParamKey        = "+paysip.key"         // payee key, hex (optional)
	ParamMinDeposit = "+paysip.min-deposit" // smallest pool, sat (optional)
)

// PaymentLateReason is the Reason header (RFC 3326) of a payee's BYE when
// the caller fell behind the meter.
const PaymentLateReason = `SIP;cause=402;text="payment late"`

// Transports of the payment protocol inside a call.
const (
	TransportDataChannel = "datachannel" // a WebRTC DataChannel labelled paysip
	TransportMessage     = "message"     // in-dialog SIP MESSAGE
)

// Offer is what a priced endpoint announces in the directory.
type Offer struct {
	PriceSatPerMin int64
	Name           string
	PayeeKey       string // hex, optional
}

// ContactParams renders the offer of aor as Contact parameters, in order.
func (o Offer) ContactParams(aor string) [][2]string {
	params := [][2]string{{ParamAOR, quote(aor)}, {ParamPrice, strconv.FormatInt(o.PriceSatPerMin, 10)}}
	if o.Name != "" {
		params = append(params, [2]string{ParamName, quote(o.Name)})
	}
	if o.PayeeKey != "" {
		params = append(params, [2]string{ParamKey, o.PayeeKey})
	}
	return params
}

// quote makes a quoted-string (RFC 3261 section 25.1) of s, dropping the
// characters a quoted-string cannot carry plainly.
func quote(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return `"` + s + `"`
}

// Unquote undoes a quoted Contact parameter value.
func Unquote(v string) string { return strings.Trim(v, `"`) }

// Listing is one priced endpoint of the directory (GET /api/directory).
type Listing struct {
	AOR            string `json:"aor"`
	Name           string `json:"name,omitempty"`
	PriceSatPerMin int64  `json:"price_sat_per_min"`
	PayeeKey       string `json:"payee_key,omitempty"`
	Contact        string `json:"contact"`
	ExpiresIn      int    `json:"expires_in"`
}

// Directory is the body of GET /api/directory.
type Directory struct {
	Domain    string    `json:"domain"`
	Directory string    `json:"directory"`
	Entries   []Listing `json:"entries"`
}

// MaxDirectorySize bounds the directory a client reads (1 MiB).
const MaxDirectorySize = 1 << 20

// ErrBadDirectory: a directory that cannot be read.
var ErrBadDirectory = errors.New("bad directory")

// DecodeDirectory reads a directory body, at most MaxDirectorySize bytes;
// entries without an address or a positive price are dropped.
func DecodeDirectory(r io.Reader) (*Directory, error) {
	var d Directory
	dec := json.NewDecoder(io.LimitReader(r, MaxDirectorySize))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDirectory, err)
	}
	kept := d.Entries[:0]
	for _, l := range d.Entries {
		if l.AOR != "" && l.PriceSatPerMin > 0 {
			kept = append(kept, l)
		}
	}
	d.Entries = kept
	return &d, nil
}

// Terms are a 402's Paysip-Terms: what a caller learns before it pays
// anything. The exact terms (a per-channel key, the lock-time window)
// come from the payment protocol inside the call.
type Terms struct {
	Version        int
	PriceSatPerMin int64
	MinDepositSat  int64    // 0: not published
	PayeeKey       string   // hex; "": not published
	Transports     []string // TransportDataChannel, TransportMessage
}

// String renders the header value, e.g.
// version=1;price-sat-per-min=60000;payee-key=02..;transports=datachannel,message
func (t Terms) String() string {
	parts := []string{"version=" + strconv.Itoa(t.Version), "price-sat-per-min=" + strconv.FormatInt(t.PriceSatPerMin, 10)}
	if t.MinDepositSat > 0 {
		parts = append(parts, "min-deposit-sat="+strconv.FormatInt(t.MinDepositSat, 10))
	}
	if t.PayeeKey != "" {
		parts = append(parts, "payee-key="+t.PayeeKey)
	}
	if len(t.Transports) > 0 {
		parts = append(parts, "transports="+strings.Join(t.Transports, ","))
	}
	return strings.Join(parts, ";")
}

// ErrBadTerms: a Paysip-Terms header that cannot be read.
var ErrBadTerms = errors.New("bad Paysip-Terms")

// MaxTermsSize bounds a Paysip-Terms value.
const MaxTermsSize = 1024

// ParseTerms reads a Paysip-Terms header value. Unknown parameters are
// ignored (a later version may add some); a missing or non-positive price
// or version is an error, as are repeated parameters.
func ParseTerms(v string) (Terms, error) {
	var t Terms
	if len(v) > MaxTermsSize {
		return t, fmt.Errorf("%w: %d bytes", ErrBadTerms, len(v))
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if name == "" {
			continue
		}
		if seen[name] {
			return Terms{}, fmt.Errorf("%w: %s twice", ErrBadTerms, name)
		}
		seen[name] = true
		var err error
		switch name {
		case "version":
			t.Version, err = strconv.Atoi(value)
		case "price-sat-per-min":
			t.PriceSatPerMin, err = positive(value)
		case "min-deposit-sat":
			t.MinDepositSat, err = positive(value)
		case "payee-key":
			t.PayeeKey = value
		case "transports":
			for _, tr := range strings.Split(value, ",") {
				if tr = strings.TrimSpace(tr); tr != "" {
					t.Transports = append(t.Transports, tr)
				}
			}
		}
		if err != nil {
			return Terms{}, fmt.Errorf("%w: %s=%q", ErrBadTerms, name, value)
		}
	}
	if t.Version <= 0 || t.PriceSatPerMin <= 0 {
		return Terms{}, fmt.Errorf("%w: %q has no version or price", ErrBadTerms, v)
	}
	return t, nil
}

// maxSat is 21 million bitcoin in satoshis (package sat's bound).
const maxSat = 21_000_000 * 100_000_000

func positive(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > maxSat {
		return 0, errors.New("not a positive amount")
	}
	return n, nil
}

// Supports reports whether a Supported or Require header value lists the
// option tag.
func Supports(headerValue string) bool {
	for _, tag := range strings.Split(headerValue, ",") {
		if strings.EqualFold(strings.TrimSpace(tag), OptionTag) {
			return true
		}
	}
	return false
}
