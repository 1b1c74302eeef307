package sipauth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Credentials are the parameters of a Digest Authorization (or
// Proxy-Authorization) value that Verify uses (RFC 7616 section 3.4,
// RFC 3261 section 22.4). Other parameters (auth-param) are read and
// ignored.
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string
	Cnonce    string
	Opaque    string
	QOP       string
	Nc        int // nonce count; 0 when absent
	Userhash  bool
}

// ErrSyntax: an Authorization value that is not Digest credentials.
var ErrSyntax = errors.New("credentials syntax")

// MaxCredentialParams bounds the parameters of one value (the known
// ones and a few extensions): a value with more is refused rather than
// read to the end.
const MaxCredentialParams = 32

// ParseCredentials parses an Authorization value of the Digest scheme:
//
//	credentials     = "Digest" LWS digest-response
//	digest-response = dig-resp *(COMMA dig-resp)
//	dig-resp        = token EQUAL ( token / quoted-string )
//
// (RFC 3261 sections 25.1 and 22.4, RFC 7616 section 3.4, RFC 7235
// section 2.1). Parameter names are case-insensitive (RFC 3261 section
// 7.3.1); a quoted-string may hold quoted-pairs (a backslash and the
// character it escapes) and UTF-8; LWS is spaces and tabs (the message
// parser has unfolded lines). It is stricter than the grammar's letter
// where a lax reading would let two parsers disagree on one value: a
// parameter named twice is refused (RFC 7235 section 2.1: each name
// occurs once), and so are a control character or invalid UTF-8 in a
// quoted-string, an escaped CR or LF, and an nc other than 8 hex digits
// (RFC 7616 section 3.4: nc-value = 8LHEX). The strings it returns share
// s's memory unless they held a quoted-pair.
func ParseCredentials(s string) (Credentials, error) {
	var c Credentials
	const scheme = "Digest"
	if len(s) <= len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) || !isLWS(s[len(scheme)]) {
		return c, fmt.Errorf("%w: not the Digest scheme", ErrSyntax)
	}
	p := credParser{s: s, i: len(scheme)}
	var seen uint16 // known names read (bit per name)
	var others [MaxCredentialParams]string
	nOthers := 0
	for n := 0; ; n++ {
		p.skipLWS()
		if n > 0 {
			if p.i == len(p.s) {
				break
			}
			if p.s[p.i] != ',' {
				return c, p.errorf("expected ','")
			}
			p.i++
			p.skipLWS()
		}
		if n >= MaxCredentialParams {
			return c, fmt.Errorf("%w: more than %d parameters", ErrSyntax, MaxCredentialParams)
		}
		name := p.token()
		if name == "" {
			return c, p.errorf("expected a parameter name")
		}
		p.skipLWS()
		if p.i == len(p.s) || p.s[p.i] != '=' {
			return c, p.errorf("expected '=' after %q", name)
		}
		p.i++
		p.skipLWS()
		var value string
		var err error
		if p.i < len(p.s) && p.s[p.i] == '"' {
			value, err = p.quoted()
		} else if value = p.token(); value == "" {
			err = p.errorf("expected the value of %q", name)
		}
		if err != nil {
			return c, err
		}
		k := knownParam(name)
		if k < 0 {
			for _, o := range others[:nOthers] {
				if strings.EqualFold(o, name) {
					return c, fmt.Errorf("%w: parameter %q twice", ErrSyntax, name)
				}
			}
			others[nOthers] = name
			nOthers++
			continue
		}
		if seen&(1<<k) != 0 {
			return c, fmt.Errorf("%w: parameter %q twice", ErrSyntax, name)
		}
		seen |= 1 << k
		switch knownParams[k] {
		case "username":
			c.Username = value
		case "realm":
			c.Realm = value
		case "nonce":
			c.Nonce = value
		case "uri":
			c.URI = value
		case "response":
			c.Response = value
		case "algorithm":
			c.Algorithm = value
		case "cnonce":
			c.Cnonce = value
		case "opaque":
			c.Opaque = value
		case "qop":
			c.QOP = value
		case "nc":
			nc, ok := parseNC(value)
			if !ok {
				return c, fmt.Errorf("%w: nc %q is not 8 hex digits up to 7fffffff", ErrSyntax, value)
			}
			c.Nc = nc
		case "userhash":
			c.Userhash = strings.EqualFold(value, "true")
		}
	}
	return c, nil
}

var knownParams = [...]string{"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc", "userhash"}

// knownParam is name's index in knownParams (case-insensitive), -1 if
// none.
func knownParam(name string) int {
	if len(name) < 2 || len(name) > len(knownByLen)+1 {
		return -1
	}
	for _, i := range knownByLen[len(name)-2] {
		if strings.EqualFold(knownParams[i], name) {
			return i
		}
	}
	return -1
}

// knownByLen lists the indexes in knownParams of the names of each
// length, from 2.
var knownByLen = func() (t [8][]int) {
	for i, k := range knownParams {
		t[len(k)-2] = append(t[len(k)-2], i)
	}
	return t
}()

// parseNC reads an nc-value: exactly 8 hex digits (RFC 7616 section
// 3.4), at most 0x7fffffff (a signed 32-bit count, as icholy/digest
// reads it; no client sends 2^31 requests on one nonce in its lifetime).
func parseNC(v string) (int, bool) {
	if len(v) != 8 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		d := unhex(v[i])
		if d < 0 {
			return 0, false
		}
		n = n<<4 | d
	}
	return n, n <= 0x7fffffff
}

func unhex(b byte) int {
	switch {
	case '0' <= b && b <= '9':
		return int(b - '0')
	case 'a' <= b && b <= 'f':
		return int(b-'a') + 10
	case 'A' <= b && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}

type credParser struct {
	s string
	i int
}

func (p *credParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrSyntax, p.i, fmt.Sprintf(format, args...))
}

func isLWS(b byte) bool { return b == ' ' || b == '\t' }

func (p *credParser) skipLWS() {
	for p.i < len(p.s) && isLWS(p.s[p.i]) {
		p.i++
	}
}

// isTokenChar: RFC 3261 section 25.1, token = 1*(alphanum / "-" / "." /
// "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
func isTokenChar(b byte) bool { return tokenChars[b] }

var tokenChars = func() (t [256]bool) {
	for b := range 256 {
		t[b] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-.!%*_+`'~", byte(b)) >= 0
	}
	return t
}()

func (p *credParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string (RFC 3261 section 25.1):
//
//	quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
//	qdtext        = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
//	quoted-pair   = "\" (%x00-09 / %x0B-0C / %x0E-7F)
//
// refusing control characters, even escaped ones other than HTAB
// (stricter: no CR or LF can come back out of a value).
func (p *credParser) quoted() (string, error) {
	p.i++ // the opening quote
	start := p.i
	var b []byte // the unescaped value, once a quoted-pair is met
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if b != nil {
				return string(append(b, v...)), nil
			}
			return v, nil
		case c == '\\':
			if p.i+1 == len(p.s) {
				return "", p.errorf("unterminated quoted-pair")
			}
			e := p.s[p.i+1]
			if e >= 0x80 || e < 0x20 && e != '\t' || e == 0x7f {
				return "", p.errorf("quoted-pair of byte %#x", e)
			}
			b = append(append(b, p.s[start:p.i]...), e)
			p.i += 2
			start = p.i
		case c >= 0x20 && c < 0x7f:
			p.i++ // qdtext, the usual case
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", p.errorf("control character %#x in a quoted-string", c)
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf("invalid UTF-8 in a quoted-string")
			}
			p.i += size
		default:
			p.i++
		}
	}
	return "", p.errorf("unterminated quoted-string")
}
