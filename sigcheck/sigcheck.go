package sigcheck

import (
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

const (
	// halfBits bounds the GLV halves: |k1|, |k2| < 2^halfBits. The halves
	// of GECC algorithm 3.74 are about 128 bits (dcrd skips the rounding,
	// which adds at most a few bits).
	halfBits = 132
	// width is the window: signed digits in [-(2^(width-1)-1), 2^(width-1)].
	width = 5
	// digits is the number of digits of a half: its digits plus a carry.
	digits = (halfBits+width-1)/width + 1
	// entries is the number of multiples per window.
	entries = 1 << (width - 1)
)

// TableBytes is the memory a KeyVerifier's table takes (35,840 bytes): an
// affine point is two FieldVals of ten uint32 words.
const TableBytes = digits * entries * 2 * 40

var (
	curveN = btcec.S256().N

	// The GLV constants of secp256k1 (Hal Finney's, the ones dcrd uses):
	// lambda*(x, y) = (beta*x, y), and the basis a1, b1, a2, b2 of GECC
	// algorithm 3.74.
	lambda = scalarFromHex("5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72")
	beta   = fieldFromHex("7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501ee")
	glvA1  = bigFromHex("3086d221a7d46bcde86c90e49284eb15")
	glvB1  = bigFromHex("-e4437ed6010e88286f547fa90abfe4c3")
	glvA2  = bigFromHex("114ca50f7a8e2f3f657c1108d9d44cfd8")
	glvB2  = bigFromHex("3086d221a7d46bcde86c90e49284eb15")

	// orderAsField is N as a field element (step 10 of dcrd's Verify).
	orderAsField = func() btcec.FieldVal {
		var f btcec.FieldVal
		f.SetByteSlice(curveN.Bytes())
		return f
	}()
)

// affine is a point with Z = 1, both coordinates normalized.
type affine struct{ x, y btcec.FieldVal }

// KeyVerifier verifies signatures against one public key. It is immutable
// after New and safe for concurrent use.
type KeyVerifier struct {
	pub *btcec.PublicKey
	// table[i][j] = (j+1) * 2^(width*i) * pub; nil when pub is not on the
	// curve.
	table *[digits][entries]affine
}

// New builds the verifier of pub: its table of multiples (see the package
// documentation).
func New(pub *btcec.PublicKey) *KeyVerifier {
	v := &KeyVerifier{pub: pub}
	if pub.IsOnCurve() {
		v.table = buildTable(pub)
	}
	return v
}

// PubKey returns the key the verifier was built for.
func (v *KeyVerifier) PubKey() *btcec.PublicKey { return v.pub }

// For reports whether the verifier was built for pub (the same pointer or an
// equal key).
func (v *KeyVerifier) For(pub *btcec.PublicKey) bool {
	return pub != nil && (v.pub == pub || v.pub.IsEqual(pub))
}

// Verify reports whether sig is a valid signature of hash by the verifier's
// key, with exactly the result of sig.Verify(hash, key).
func (v *KeyVerifier) Verify(sig *ecdsa.Signature, hash []byte) bool {
	r, s, ok := scalars(sig)
	if !ok {
		return sig.Verify(hash, v.pub)
	}
	return v.VerifyScalars(&r, &s, hash)
}

// scalars reads r and s back out of sig, which keeps them private, through
// its DER form. Serialize writes N-s for a high s; (r, s) and (r, N-s) verify
// alike (w, u1, u2 and X all change sign, and X and -X share their x
// coordinate), so this does not change the result.
func scalars(sig *ecdsa.Signature) (r, s btcec.ModNScalar, ok bool) {
	der := sig.Serialize()
	// 0x30 len 0x02 rlen r 0x02 slen s, as written by Serialize.
	if len(der) < 8 || der[0] != 0x30 || der[2] != 0x02 {
		return r, s, false
	}
	rlen := int(der[3])
	if 4+rlen+2 > len(der) || der[4+rlen] != 0x02 {
		return r, s, false
	}
	slen := int(der[5+rlen])
	if 6+rlen+slen != len(der) {
		return r, s, false
	}
	rb, sb := trimZeros(der[4:4+rlen]), trimZeros(der[6+rlen:])
	if len(rb) > 32 || len(sb) > 32 {
		return r, s, false
	}
	if r.SetByteSlice(rb) || s.SetByteSlice(sb) {
		return r, s, false // cannot happen: Serialize writes scalars < N
	}
	return r, s, true
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// VerifyScalars is Verify for a signature given as its scalars (already
// reduced mod N, as ecdsa.NewSignature takes them).
func (v *KeyVerifier) VerifyScalars(r, s *btcec.ModNScalar, hash []byte) bool {
	// The steps are dcrd's ecdsa.Signature.Verify (v4.0.1), GECC 4.30.
	// 1. Fail if r or s is not in [1, N-1].
	if r.IsZero() || s.IsZero() {
		return false
	}
	if v.table == nil {
		return ecdsa.NewSignature(r, s).Verify(hash, v.pub)
	}
	// 2. e = H(m), truncated to 32 bytes and reduced as dcrd does.
	var e btcec.ModNScalar
	e.SetByteSlice(hash)
	// 3. w = s^-1 mod N. 4. u1 = e*w, u2 = r*w mod N.
	var w, u1, u2 btcec.ModNScalar
	w.InverseValNonConst(s)
	u1.Mul2(&e, &w)
	u2.Mul2(r, &w)
	// 5. X = u1*G + u2*Q.
	var X btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&u1, &X)
	v.addMul(&u2, &X)
	X.X.Normalize()
	X.Y.Normalize()
	X.Z.Normalize()
	// 6. Fail if X is the point at infinity.
	if (X.X.IsZero() && X.Y.IsZero()) || X.Z.IsZero() {
		return false
	}
	// 7. z = Z^2. 8. Verified if r*z == X.x (mod P).
	var z, rf, result btcec.FieldVal
	z.SquareVal(&X.Z)
	rb := r.Bytes()
	rf.SetBytes(&rb)
	result.Mul2(&rf, &z).Normalize()
	if result.Equals(&X.X) {
		return true
	}
	// 9. Fail if r + N >= P. 10. Verified if (r+N)*z == X.x (mod P).
	if rf.IsGtOrEqPrimeMinusOrder() {
		return false
	}
	rf.Add(&orderAsField)
	result.Mul2(&rf, &z).Normalize()
	return result.Equals(&X.X)
}

// addMul sets acc = acc + k*Q from the table: k = k1 + k2*lambda (mod N), and
// each half in signed base-2^width digits, one mixed addition per nonzero digit.
func (v *KeyVerifier) addMul(k *btcec.ModNScalar, acc *btcec.JacobianPoint) {
	k1, k2, neg1, neg2, ok := splitK(k)
	if !ok {
		// Never seen; kept so that a half too long for the table still
		// gives dcrd's result.
		var q, kq btcec.JacobianPoint
		v.pub.AsJacobian(&q)
		btcec.ScalarMultNonConst(k, &q, &kq)
		btcec.AddNonConst(acc, &kq, acc)
		return
	}
	d1, d2 := recode(k1), recode(k2)
	var pt btcec.JacobianPoint
	pt.Z.SetInt(1)
	for i := range digits {
		if d := d1[i]; d != 0 {
			v.lookup(&pt, i, d, neg1, false)
			btcec.AddNonConst(acc, &pt, acc)
		}
		if d := d2[i]; d != 0 {
			v.lookup(&pt, i, d, neg2, true)
			btcec.AddNonConst(acc, &pt, acc)
		}
	}
}

// lookup sets pt (whose Z is 1) to d * 2^(width*i) * Q, negated if neg, with phi
// applied if endo: phi(x, y) = (beta*x, y) = lambda*(x, y).
func (v *KeyVerifier) lookup(pt *btcec.JacobianPoint, i int, d int8, neg, endo bool) {
	if d < 0 {
		d, neg = -d, !neg
	}
	e := &v.table[i][d-1]
	if endo {
		pt.X.Mul2(&e.x, &beta).Normalize()
	} else {
		pt.X.Set(&e.x)
	}
	if neg {
		pt.Y.NegateVal(&e.y, 1).Normalize()
	} else {
		pt.Y.Set(&e.y)
	}
}

// splitK returns k1, k2 with k = k1 + k2*lambda (mod N) as magnitudes and
// signs (GECC algorithm 3.74, computed as dcrd's splitK does). ok is false if
// a half does not fit the table or the identity does not hold.
func splitK(k *btcec.ModNScalar) (k1, k2 [17]byte, neg1, neg2, ok bool) {
	kb := k.Bytes()
	bk := new(big.Int).SetBytes(kb[:])
	// c1 = floor(b2*k/N), c2 = floor(b1*k/N) (sign of b1 folded in).
	c1 := new(big.Int).Mul(glvB2, bk)
	c1.Div(c1, curveN)
	c2 := new(big.Int).Mul(glvB1, bk)
	c2.Div(c2, curveN)
	// k1 = k - c1*a1 + c2*a2, k2 = c2*b2 - c1*b1.
	t1 := new(big.Int).Mul(c1, glvA1)
	t2 := new(big.Int).Mul(c2, glvA2)
	b1 := new(big.Int).Sub(bk, t1)
	b1.Add(b1, t2)
	t1.Mul(c1, glvB1)
	t2.Mul(c2, glvB2)
	b2 := new(big.Int).Sub(t2, t1)
	if b1.BitLen() > halfBits || b2.BitLen() > halfBits {
		return k1, k2, false, false, false
	}
	neg1, neg2 = b1.Sign() < 0, b2.Sign() < 0
	b1.Abs(b1).FillBytes(k1[:])
	b2.Abs(b2).FillBytes(k2[:])
	// Check k1 + k2*lambda == k (mod N) in the scalar field.
	var s1, s2 btcec.ModNScalar
	s1.SetByteSlice(k1[:])
	s2.SetByteSlice(k2[:])
	if neg1 {
		s1.Negate()
	}
	if neg2 {
		s2.Negate()
	}
	s2.Mul(&lambda).Add(&s1)
	return k1, k2, neg1, neg2, s2.Equals(k)
}

// recode writes the big-endian magnitude b (< 2^halfBits) as signed
// base-2^width digits, least significant first: b = sum d[i]*2^(width*i).
func recode(b [17]byte) (d [digits]int8) {
	var carry int
	for i := range digits - 1 {
		p := i * width
		v := int(b[16-p/8])
		if p/8 < 16 {
			v |= int(b[15-p/8]) << 8
		}
		x := (v>>(p%8))&(1<<width-1) + carry
		if x > entries {
			x -= 1 << width
			carry = 1
		} else {
			carry = 0
		}
		d[i] = int8(x)
	}
	d[digits-1] = int8(carry)
	return d
}

// buildTable computes table[i][j] = (j+1) * 2^(width*i) * pub in Jacobian
// coordinates, then converts all of them to affine with one field inversion
// (Montgomery's trick: invert the product of all Z, then peel each inverse
// off with two multiplications).
func buildTable(pub *btcec.PublicKey) *[digits][entries]affine {
	const n = digits * entries
	jac := make([]btcec.JacobianPoint, n)
	var base btcec.JacobianPoint
	pub.AsJacobian(&base) // Q, Z = 1
	for i := range digits {
		row := jac[i*entries : (i+1)*entries]
		row[0].Set(&base)
		for j := 1; j < entries; j++ {
			btcec.AddNonConst(&row[j-1], &base, &row[j])
		}
		// 2^(width*(i+1)) * Q = 2 * (entries * 2^(width*i) * Q).
		btcec.DoubleNonConst(&row[entries-1], &base)
	}
	// No entry is the point at infinity: (j+1)*2^(width*i) < 2^150 < N, the prime order
	// of every point of the curve but infinity. So every Z is nonzero.
	prefix := make([]btcec.FieldVal, n)
	prefix[0].Set(&jac[0].Z)
	for k := 1; k < n; k++ {
		prefix[k].Mul2(&prefix[k-1], &jac[k].Z)
	}
	var inv btcec.FieldVal
	inv.Set(&prefix[n-1]).Normalize().Inverse()
	t := new([digits][entries]affine)
	var zinv, zinv2 btcec.FieldVal
	for k := n - 1; k >= 0; k-- {
		if k > 0 {
			zinv.Mul2(&inv, &prefix[k-1]) // 1/Z_k
			inv.Mul(&jac[k].Z)            // 1/(Z_0...Z_{k-1})
		} else {
			zinv.Set(&inv)
		}
		zinv2.SquareVal(&zinv)
		e := &t[k/entries][k%entries]
		e.x.Mul2(&jac[k].X, &zinv2).Normalize()
		e.y.Mul2(&jac[k].Y, zinv2.Mul(&zinv)).Normalize()
	}
	return t
}

func bigFromHex(s string) *big.Int {
	b, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("sigcheck: bad constant " + s)
	}
	return b
}

func scalarFromHex(s string) btcec.ModNScalar {
	var k btcec.ModNScalar
	if k.SetByteSlice(bigFromHex(s).Bytes()) {
		panic("sigcheck: constant overflows N: " + s)
	}
	return k
}

func fieldFromHex(s string) btcec.FieldVal {
	var f btcec.FieldVal
	if f.SetByteSlice(bigFromHex(s).Bytes()) {
		panic("sigcheck: constant overflows P: " + s)
	}
	return f
}
