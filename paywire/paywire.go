package paywire

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/paysip/paysip/sat"
)

// ContentType is the media type of a paysip message carried in a SIP MESSAGE
// body.
const ContentType = "application/vnd.paysip+json"

// DataChannelLabel and DataChannelProtocol name the WebRTC DataChannel that
// carries the protocol.
const (
	DataChannelLabel    = "paysip"
	DataChannelProtocol = "paysip/1"
)

// MaxMessageSize bounds an encoded message. The largest legitimate message,
// a refund request with a funding transaction of a few hundred inputs, fits
// well within it.
const MaxMessageSize = 64 * 1024

// Version 1 is the only protocol version so far.
const Version1 = 1

// SupportedVersions lists the versions this implementation speaks, lowest
// first.
var SupportedVersions = []int{Version1}

// Sentinel kinds of decoding failure; a *DecodeError matches one of them with
// errors.Is.
var (
	ErrTooLarge       = errors.New("message too large")
	ErrMalformed      = errors.New("malformed message")
	ErrUnknownVersion = errors.New("unknown protocol version")
	ErrUnknownType    = errors.New("unknown message type")
	ErrMissingField   = errors.New("missing field")
	ErrBadAmount      = errors.New("bad amount")
	ErrBadField       = errors.New("bad field")
)

// DecodeError says why a message was rejected.
type DecodeError struct {
	Kind   error  // one of the sentinels above
	Type   string // message type, when known
	Field  string // JSON field at fault, when known
	Reason string // human-readable detail
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Type != "" {
		fmt.Fprintf(&b, " in %q", e.Type)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ", field %q", e.Field)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

// Unwrap lets errors.Is match the Kind.
func (e *DecodeError) Unwrap() error { return e.Kind }

// Message is one protocol message. Every concrete message type is a pointer
// to one of the structs in messages.go.
type Message interface {
	// Type is the value of the JSON "type" field.
	Type() string
	// Version is the value of the JSON "v" field.
	Version() int
	// SetVersion sets it.
	SetVersion(int)
	header() *Header
	validate() *DecodeError
}

// Header is embedded in every message.
type Header struct {
	V   int    `json:"v"`
	Typ string `json:"type"`
}

// Version implements Message.
func (h Header) Version() int { return h.V }

// SetVersion sets the message's "v" field.
func (h *Header) SetVersion(v int) { h.V = v }

func (h *Header) header() *Header { return h }

// Hex is a byte string carried as lower-case hexadecimal in JSON.
type Hex []byte

// MarshalJSON implements json.Marshaler.
func (h Hex) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(h))
}

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a hex string")
	}
	if s != strings.ToLower(s) {
		return fmt.Errorf("hex must be lower case")
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bad hex: %v", err)
	}
	*h = d
	return nil
}

// Encode renders a message as JSON, filling in its "v" (Version1 unless set)
// and "type" fields. It refuses a message that would not decode.
func Encode(m Message) ([]byte, error) {
	setHeader(m)
	if de := m.validate(); de != nil {
		de.Type = m.Type()
		return nil, de
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize {
		return nil, &DecodeError{Kind: ErrTooLarge, Type: m.Type(), Reason: fmt.Sprintf("%d bytes > %d", len(b), MaxMessageSize)}
	}
	return b, nil
}

func setHeader(m Message) {
	h := m.header()
	if h.V == 0 {
		h.V = Version1
	}
	h.Typ = m.Type()
}

// Decode parses one message. The result is one of the pointer types of
// messages.go; switch on it with a type switch.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, &DecodeError{Kind: ErrTooLarge, Reason: fmt.Sprintf("%d bytes > %d", len(b), MaxMessageSize)}
	}
	if m, ok := decodePayFast(b); ok {
		if de := m.validate(); de != nil {
			de.Type = TypePay
			return nil, de
		}
		return m, nil
	}
	return decodeGeneral(b)
}

// decodeGeneral decodes any message, checking every field by reflection.
func decodeGeneral(b []byte) (Message, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, &DecodeError{Kind: ErrMalformed, Reason: "not a JSON object: " + err.Error()}
	}
	if raw == nil {
		return nil, &DecodeError{Kind: ErrMalformed, Reason: "not a JSON object"}
	}
	var hdr Header
	if err := json.Unmarshal(rawOr(raw["type"]), &hdr.Typ); err != nil || hdr.Typ == "" {
		return nil, &DecodeError{Kind: ErrMissingField, Field: "type", Reason: "want a non-empty string"}
	}
	newMsg, ok := registry[hdr.Typ]
	if !ok {
		return nil, &DecodeError{Kind: ErrUnknownType, Type: hdr.Typ}
	}
	if err := json.Unmarshal(rawOr(raw["v"]), &hdr.V); err != nil || hdr.V == 0 {
		return nil, &DecodeError{Kind: ErrMissingField, Type: hdr.Typ, Field: "v", Reason: "want a positive integer"}
	}
	if !Supports(hdr.V) {
		return nil, &DecodeError{Kind: ErrUnknownVersion, Type: hdr.Typ, Field: "v", Reason: fmt.Sprintf("version %d; this side speaks %v", hdr.V, SupportedVersions)}
	}
	m := newMsg()
	if de := checkRequired(m, raw); de != nil {
		de.Type = hdr.Typ
		return nil, de
	}
	// b is one JSON object (the map above took all of it): Unmarshal
	// decodes it as a Decoder would, without the Decoder's buffer.
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fieldError(hdr.Typ, err)
	}
	if de := m.validate(); de != nil {
		de.Type = hdr.Typ
		return nil, de
	}
	return m, nil
}

// Supports reports whether this implementation speaks version v.
func Supports(v int) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// Negotiate returns the highest version both this side and a peer offering
// theirs speak, or 0 if there is none.
func Negotiate(theirs []int) int {
	best := 0
	for _, v := range theirs {
		if Supports(v) && v > best {
			best = v
		}
	}
	return best
}

func rawOr(r json.RawMessage) json.RawMessage {
	if r == nil {
		return json.RawMessage("null")
	}
	return r
}

// checkRequired rejects a message missing a field whose JSON tag has no
// omitempty, or carrying it as null.
func checkRequired(m Message, raw map[string]json.RawMessage) *DecodeError {
	for _, name := range requiredFields(reflect.TypeOf(m).Elem()) {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return &DecodeError{Kind: ErrMissingField, Field: name}
		}
	}
	return nil
}

// required caches requiredFields per message type: reading the struct
// tags of every message on the payee's hot path cost as much as a
// tenth of its decoding.
var required sync.Map // reflect.Type -> []string

// requiredFields lists the JSON names of t's fields without omitempty.
func requiredFields(t reflect.Type) []string {
	if v, ok := required.Load(t); ok {
		return v.([]string)
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous || tag == "" || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "omitempty") {
			continue
		}
		names = append(names, name)
	}
	required.Store(t, names)
	return names
}

func fieldError(typ string, err error) *DecodeError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		kind := ErrBadField
		if strings.HasPrefix(te.Value, "number") {
			kind = ErrBadAmount
		}
		return &DecodeError{Kind: kind, Type: typ, Field: te.Field, Reason: fmt.Sprintf("%s does not fit %s", te.Value, te.Type)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &DecodeError{Kind: ErrMalformed, Type: typ, Reason: err.Error()}
	}
	// Errors from Hex.UnmarshalJSON and friends.
	return &DecodeError{Kind: ErrBadField, Type: typ, Reason: err.Error()}
}

// amount checks a satoshi amount field.
func amount(field string, v int64) *DecodeError {
	if err := sat.Check(v); err != nil {
		return &DecodeError{Kind: ErrBadAmount, Field: field, Reason: err.Error()}
	}
	return nil
}

// positive checks an amount field that must be above zero.
func positive(field string, v int64) *DecodeError {
	if de := amount(field, v); de != nil {
		return de
	}
	if v == 0 {
		return &DecodeError{Kind: ErrBadAmount, Field: field, Reason: "must be above zero"}
	}
	return nil
}

func badField(field, reason string) *DecodeError {
	return &DecodeError{Kind: ErrBadField, Field: field, Reason: reason}
}

// ValidChannelID reports whether s has the form "<txid>:<vout>": the funding
// transaction id as 64 lower-case hex digits (RPC byte order), a colon, and
// the output index in decimal.
func ValidChannelID(s string) bool {
	txid, vout, ok := strings.Cut(s, ":")
	if !ok || len(txid) != 64 || txid != strings.ToLower(txid) {
		return false
	}
	if _, err := hex.DecodeString(txid); err != nil {
		return false
	}
	if vout == "" || (len(vout) > 1 && vout[0] == '0') {
		return false
	}
	_, err := strconv.ParseUint(vout, 10, 32)
	return err == nil
}

func channelID(field, s string) *DecodeError {
	if !ValidChannelID(s) {
		return badField(field, "want <64 hex txid>:<vout>")
	}
	return nil
}

func nonEmpty(field string, b []byte) *DecodeError {
	if len(b) == 0 {
		return badField(field, "must not be empty")
	}
	return nil
}

func first(des ...*DecodeError) *DecodeError {
	for _, de := range des {
		if de != nil {
			return de
		}
	}
	return nil
}
