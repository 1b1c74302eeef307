package sigcheck

import (
	"crypto/sha256"
	"encoding/binary"
	"math/big"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// scalarOf reduces b mod N.
func scalarOf(b []byte) btcec.ModNScalar {
	var k btcec.ModNScalar
	k.SetByteSlice(b)
	return k
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func randKey(t testing.TB, rng *rand.Rand) *btcec.PrivateKey {
	for {
		k := scalarOf(randBytes(rng, 32))
		if !k.IsZero() {
			return btcec.PrivKeyFromScalar(&k)
		}
	}
}

// rsOf returns the scalars of a signature the way the tests build them.
func rsOf(t testing.TB, sig *ecdsa.Signature) (r, s btcec.ModNScalar) {
	r, s, ok := scalars(sig)
	if !ok {
		t.Fatalf("cannot read back %x", sig.Serialize())
	}
	return r, s
}

// check compares the verifier with dcrd's Verify on (r, s, hash) and returns
// the common result.
func check(t *testing.T, v *KeyVerifier, r, s btcec.ModNScalar, hash []byte, what string) bool {
	t.Helper()
	want := ecdsa.NewSignature(&r, &s).Verify(hash, v.PubKey())
	got := v.VerifyScalars(&r, &s, hash)
	if got != want {
		rb, sb := r.Bytes(), s.Bytes()
		t.Fatalf("%s: key %x r %x s %x hash %x: keyed %v, dcrd %v",
			what, v.PubKey().SerializeCompressed(), rb, sb, hash, got, want)
	}
	if sigGot := v.Verify(ecdsa.NewSignature(&r, &s), hash); sigGot != want {
		t.Fatalf("%s: Verify(*Signature) %v, dcrd %v", what, sigGot, want)
	}
	return want
}

func flip(b [32]byte, bit int) []byte {
	b[bit/8] ^= 1 << (bit % 8)
	return b[:]
}

// TestDifferential runs thousands of random keys and signatures, valid and
// mutated, through both verifiers.
func TestDifferential(t *testing.T) {
	keys, sigsPerKey := 300, 8
	if testing.Short() {
		keys = 40
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := curveN
	nBytes := n.Bytes()
	nPlus5 := new(big.Int).Add(n, big.NewInt(5)).FillBytes(make([]byte, 32))
	other := randKey(t, rng)
	valid, total := 0, 0
	for range keys {
		priv := randKey(t, rng)
		v := New(priv.PubKey())
		for range sigsPerKey {
			hash := randBytes(rng, 32)
			sig := ecdsa.Sign(priv, hash)
			r, s := rsOf(t, sig)
			rb, sb := r.Bytes(), s.Bytes()
			var hb [32]byte
			copy(hb[:], hash)
			var negS btcec.ModNScalar
			negS.NegateVal(&s)
			var zero btcec.ModNScalar
			cases := []struct {
				what    string
				r, s    btcec.ModNScalar
				hash    []byte
				isValid bool
			}{
				{"valid", r, s, hash, true},
				{"high s", r, negS, hash, true},
				{"flip r", scalarOf(flip(rb, rng.IntN(256))), s, hash, false},
				{"flip s", r, scalarOf(flip(sb, rng.IntN(256))), hash, false},
				{"flip hash", r, s, flip(hb, rng.IntN(256)), false},
				{"r zero", zero, s, hash, false},
				{"s zero", r, zero, hash, false},
				{"r = N", scalarOf(nBytes), s, hash, false},
				{"s = N", r, scalarOf(nBytes), hash, false},
				{"r > N", scalarOf(nPlus5), s, hash, false},
				{"s > N", r, scalarOf(nPlus5), hash, false},
				{"r = s", r, r, hash, false},
				{"longer hash", r, s, append(append([]byte(nil), hash...), randBytes(rng, 1+rng.IntN(40))...), true},
				{"shorter hash", r, s, hash[:rng.IntN(32)], false},
				{"empty hash", r, s, nil, false},
			}
			for _, c := range cases {
				got := check(t, v, c.r, c.s, c.hash, c.what)
				if c.isValid && !got {
					t.Fatalf("%s: a valid signature is rejected", c.what)
				}
				if got {
					valid++
				}
				total++
			}
			// Another key's signature of the same hash.
			r2, s2 := rsOf(t, ecdsa.Sign(other, hash))
			if check(t, v, r2, s2, hash, "other key") {
				t.Fatal("another key's signature verifies")
			}
			total++
		}
	}
	t.Logf("%d checks, %d valid", total, valid)
}

// TestShortHashSigned signs hashes shorter than 32 bytes (dcrd reads them as
// big-endian numbers) so that the shorter-hash path is also seen accepting.
func TestShortHashSigned(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 64 {
		priv := randKey(t, rng)
		v := New(priv.PubKey())
		hash := randBytes(rng, i%33)
		r, s := rsOf(t, ecdsa.Sign(priv, hash))
		if !check(t, v, r, s, hash, "short hash") {
			t.Fatalf("%d-byte hash: valid signature rejected", len(hash))
		}
	}
}

// TestSpecialKeys uses keys whose multiples line up with G's (d = 1, 2, -1,
// powers of 16, lambda) and hashes that make u1 zero or equal to u2.
func TestSpecialKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ds := []*big.Int{big.NewInt(1), big.NewInt(2), big.NewInt(3), big.NewInt(16), big.NewInt(255),
		new(big.Int).Sub(curveN, big.NewInt(1)), new(big.Int).Sub(curveN, big.NewInt(2)),
		new(big.Int).Lsh(big.NewInt(1), 128), new(big.Int).Lsh(big.NewInt(1), 132),
		bigFromHex("5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72")}
	for _, d := range ds {
		dk := scalarOf(d.Bytes())
		priv := btcec.PrivKeyFromScalar(&dk)
		v := New(priv.PubKey())
		for range 20 {
			hash := randBytes(rng, 32)
			r, s := rsOf(t, ecdsa.Sign(priv, hash))
			if !check(t, v, r, s, hash, "special key") {
				t.Fatalf("d=%x: valid signature rejected", d)
			}
			// u1 = 0: e = 0 (hash of zeros), and e = N.
			check(t, v, r, s, make([]byte, 32), "zero hash")
			check(t, v, r, s, curveN.Bytes(), "hash N")
			// e = r: u1 = u2.
			rb := r.Bytes()
			check(t, v, r, s, rb[:], "hash r")
		}
	}
}

// forge builds a key and a signature whose verification point is exactly R
// = u1*G + u2*Q for chosen u1, u2: Q = u2^-1 (R - u1*G) given R's discrete
// log rd, then s = r/u2 and e = u1*s. This reaches the cases random
// signatures never do.
func forge(u1, u2, rd, r btcec.ModNScalar) (pub *btcec.PublicKey, sr, ss btcec.ModNScalar, hash []byte) {
	// d = (rd - u1) / u2.
	var d, inv btcec.ModNScalar
	inv.InverseValNonConst(&u2)
	var negU1 btcec.ModNScalar
	negU1.NegateVal(&u1)
	d.Add2(&rd, &negU1).Mul(&inv)
	pub = btcec.PrivKeyFromScalar(&d).PubKey()
	ss.Mul2(&r, &inv) // s = r/u2, so r*w = u2
	var e btcec.ModNScalar
	e.Mul2(&u1, &ss) // u1 = e*w
	eb := e.Bytes()
	return pub, r, ss, eb[:]
}

// TestInfinity: u1*G + u2*Q is the point at infinity (rd = 0): both reject.
func TestInfinity(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 50 {
		u1, u2, r := scalarOf(randBytes(rng, 32)), scalarOf(randBytes(rng, 32)), scalarOf(randBytes(rng, 32))
		var zero btcec.ModNScalar
		pub, sr, ss, hash := forge(u1, u2, zero, r)
		if check(t, New(pub), sr, ss, hash, "infinity") {
			t.Fatal("a signature whose point is infinity verifies")
		}
	}
}

// TestForgedPoint: forge with a known R and r = R.x mod N verifies, r+1 does
// not; and the R.x >= N case (r = R.x - N, accepted through step 10) with R
// found by searching x = N + t for a point on the curve.
func TestForgedPoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 50 {
		u1, u2 := scalarOf(randBytes(rng, 32)), scalarOf(randBytes(rng, 32))
		rd := scalarOf(randBytes(rng, 32))
		R := btcec.PrivKeyFromScalar(&rd).PubKey()
		r := scalarOf(R.X().Bytes())
		pub, sr, ss, hash := forge(u1, u2, rd, r)
		if !check(t, New(pub), sr, ss, hash, "forged") {
			t.Fatal("forged valid signature rejected")
		}
		var one btcec.ModNScalar
		one.SetInt(1)
		r.Add(&one)
		pub, sr, ss, hash = forge(u1, u2, rd, r)
		if check(t, New(pub), sr, ss, hash, "forged r+1") {
			t.Fatal("forged r+1 accepted")
		}
	}
	// A point with x in [N, P): we know no discrete log of it, so build Q
	// from it directly: Q = u2^-1 (R - u1*G) needs R as a point.
	p := btcec.S256().P
	found := 0
	for tt := int64(0); found < 6 && tt < 200; tt++ {
		x := new(big.Int).Add(curveN, big.NewInt(tt))
		if x.Cmp(p) >= 0 {
			break
		}
		var fx, fy btcec.FieldVal
		fx.SetByteSlice(x.Bytes())
		if !btcec.DecompressY(&fx, tt%2 == 0, &fy) {
			continue
		}
		found++
		u1, u2 := scalarOf(randBytes(rng, 32)), scalarOf(randBytes(rng, 32))
		var R, U1G, Q btcec.JacobianPoint
		R.X.Set(&fx)
		R.Y.Set(fy.Normalize())
		R.Z.SetInt(1)
		var negU1, invU2 btcec.ModNScalar
		negU1.NegateVal(&u1)
		invU2.InverseValNonConst(&u2)
		btcec.ScalarBaseMultNonConst(&negU1, &U1G)
		btcec.AddNonConst(&R, &U1G, &Q)
		btcec.ScalarMultNonConst(&invU2, &Q, &Q)
		Q.ToAffine()
		pub := btcec.NewPublicKey(&Q.X, &Q.Y)
		r := scalarOf(big.NewInt(tt).Bytes()) // x mod N
		if r.IsZero() {
			continue
		}
		var s, e btcec.ModNScalar
		s.Mul2(&r, &invU2)
		e.Mul2(&u1, &s)
		eb := e.Bytes()
		if !check(t, New(pub), r, s, eb[:], "x >= N") {
			t.Fatalf("x = N+%d: valid signature rejected", tt)
		}
		// r' = x itself does not fit a scalar; r' = x - N + 1 must fail.
		var one btcec.ModNScalar
		one.SetInt(1)
		r.Add(&one)
		s.Mul2(&r, &invU2)
		e.Mul2(&u1, &s)
		eb = e.Bytes()
		if check(t, New(pub), r, s, eb[:], "x >= N, r+1") {
			t.Fatal("x >= N: wrong r accepted")
		}
	}
	if found == 0 {
		t.Fatal("no point with x >= N found")
	}
}

// TestOffCurveKey: a key off the curve (NewPublicKey does not check) falls
// back to dcrd itself.
func TestOffCurveKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	priv := randKey(t, rng)
	pub := priv.PubKey()
	x, y := pub.X(), pub.Y()
	var fx, fy btcec.FieldVal
	fx.SetByteSlice(x.Bytes())
	fy.SetByteSlice(y.Bytes())
	fy.AddInt(1).Normalize()
	bad := btcec.NewPublicKey(&fx, &fy)
	v := New(bad)
	if v.table != nil {
		t.Fatal("table built for a key off the curve")
	}
	hash := randBytes(rng, 32)
	r, s := rsOf(t, ecdsa.Sign(priv, hash))
	check(t, v, r, s, hash, "off curve")
}

// TestAddMul compares the table's k*Q with dcrd's ScalarMultNonConst for
// random and edge scalars, and checks the GLV split never falls back.
func TestAddMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	priv := randKey(t, rng)
	v := New(priv.PubKey())
	var q btcec.JacobianPoint
	v.pub.AsJacobian(&q)
	ks := []btcec.ModNScalar{lambda}
	for _, b := range [][]byte{{1}, {2}, {8}, {9}, {16}, {0x88}, new(big.Int).Sub(curveN, big.NewInt(1)).Bytes(),
		new(big.Int).Lsh(big.NewInt(1), 128).Bytes(), new(big.Int).Lsh(big.NewInt(1), 255).Bytes(),
		new(big.Int).Sub(curveN, bigFromHex("5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72")).Bytes()} {
		ks = append(ks, scalarOf(b))
	}
	for range 2000 {
		ks = append(ks, scalarOf(randBytes(rng, 32)))
	}
	for i := range 300 { // low-weight and dense scalars
		var b [32]byte
		for j := range b {
			b[j] = 0xff
			if (i>>(j%8))&1 == 0 {
				b[j] = 0
			}
		}
		binary.BigEndian.PutUint32(b[28:], uint32(i))
		ks = append(ks, scalarOf(b[:]))
	}
	for _, k := range ks {
		if _, _, _, _, ok := splitK(&k); !ok {
			kb := k.Bytes()
			t.Fatalf("split of %x falls back", kb)
		}
		var got, want btcec.JacobianPoint
		v.addMul(&k, &got)
		btcec.ScalarMultNonConst(&k, &q, &want)
		got.ToAffine()
		want.ToAffine()
		if !got.X.Equals(&want.X) || !got.Y.Equals(&want.Y) {
			kb := k.Bytes()
			t.Fatalf("k = %x: table gives a different point", kb)
		}
	}
}

// TestTable checks every entry against a scalar multiplication.
func TestTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	priv := randKey(t, rng)
	v := New(priv.PubKey())
	var q btcec.JacobianPoint
	v.pub.AsJacobian(&q)
	for i := range digits {
		for j := range entries {
			m := new(big.Int).Lsh(big.NewInt(int64(j+1)), uint(width*i))
			k := scalarOf(m.Bytes())
			var want btcec.JacobianPoint
			btcec.ScalarMultNonConst(&k, &q, &want)
			want.ToAffine()
			e := v.table[i][j]
			if !e.x.Equals(&want.X) || !e.y.Equals(&want.Y) {
				t.Fatalf("table[%d][%d] wrong", i, j)
			}
		}
	}
}

// TestRecode checks the signed digits add back up.
func TestRecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for i := range 5000 {
		var b [17]byte
		copy(b[:], randBytes(rng, 17))
		b[0] &= 0x0f // < 2^halfBits
		if i%7 == 0 {
			b = [17]byte{0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		}
		d := recode(b)
		sum := new(big.Int)
		for j := digits - 1; j >= 0; j-- {
			if d[j] < -(entries-1) || d[j] > entries {
				t.Fatalf("digit %d out of range", d[j])
			}
			sum.Lsh(sum, width).Add(sum, big.NewInt(int64(d[j])))
		}
		if sum.Cmp(new(big.Int).SetBytes(b[:])) != 0 {
			t.Fatalf("recode of %x sums to %x", b, sum)
		}
	}
}

// TestFor: the verifier knows its key.
func TestFor(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	a, b := randKey(t, rng).PubKey(), randKey(t, rng).PubKey()
	v := New(a)
	again, _ := btcec.ParsePubKey(a.SerializeCompressed())
	if !v.For(a) || !v.For(again) || v.For(b) || v.For(nil) {
		t.Fatal("For does not tell keys apart")
	}
}

// FuzzKeyVerifier compares with dcrd on arbitrary inputs. The key comes from
// a seed; r and s are XOR masks over a valid signature of hash, so a zero
// mask is a valid signature and any other a mutation; raw makes r and s the
// masks themselves.
func FuzzKeyVerifier(f *testing.F) {
	f.Add([]byte("seed"), make([]byte, 32), []byte{}, []byte{}, false)
	f.Add([]byte("seed"), []byte("short"), []byte{1}, []byte{}, false)
	f.Add([]byte("k"), make([]byte, 40), []byte{}, []byte{0x80}, false)
	f.Add([]byte("k"), make([]byte, 32), []byte{5}, []byte{7}, true)
	f.Fuzz(func(t *testing.T, seed, hash, rmask, smask []byte, raw bool) {
		h := sha256.Sum256(seed)
		d := scalarOf(h[:])
		if d.IsZero() || len(rmask) > 32 || len(smask) > 32 {
			return
		}
		priv := btcec.PrivKeyFromScalar(&d)
		v := New(priv.PubKey())
		var r, s btcec.ModNScalar
		if raw {
			r, s = scalarOf(rmask), scalarOf(smask)
		} else {
			r0, s0 := rsOf(t, ecdsa.Sign(priv, hash))
			rb, sb := r0.Bytes(), s0.Bytes()
			for i, m := range rmask {
				rb[32-len(rmask)+i] ^= m
			}
			for i, m := range smask {
				sb[32-len(smask)+i] ^= m
			}
			r, s = scalarOf(rb[:]), scalarOf(sb[:])
		}
		got := check(t, v, r, s, hash, "fuzz")
		allZero := func(b []byte) bool {
			for _, x := range b {
				if x != 0 {
					return false
				}
			}
			return true
		}
		if !raw && allZero(rmask) && allZero(smask) && !got {
			t.Fatal("unmutated signature rejected")
		}
	})
}

// TestTableBytes keeps the documented figure true.
func TestTableBytes(t *testing.T) {
	if got := int(unsafe.Sizeof([digits][entries]affine{})); got != TableBytes || TableBytes != 35_840 {
		t.Fatalf("table takes %d bytes, TableBytes says %d (doc: 35,840)", got, TableBytes)
	}
}

// TestAddMulCollisions starts the sum (Z != 1) at the opposite or the
// double of the first points addMul will add, so that its mixed additions
// meet an equal point (doubling), an opposite one (infinity mid-way), and
// go on from infinity.
func TestAddMulCollisions(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	v := New(randKey(t, rng).PubKey())
	var q btcec.JacobianPoint
	v.pub.AsJacobian(&q)
	for range 200 {
		k := scalarOf(randBytes(rng, 32))
		p := addedPoints(v, &k)
		var p01 btcec.JacobianPoint
		btcec.AddNonConst(&p[0], &p[1], &p01)
		starts := []btcec.JacobianPoint{p[0], neg(p[0]), neg(p01), p01, neg(p[1])}
		for i, start := range starts {
			var two btcec.FieldVal // a Z != 1 representation of the same point
			two.SetInt(2)
			scaleZ(&start, &two)
			var kq, want btcec.JacobianPoint
			btcec.ScalarMultNonConst(&k, &q, &kq)
			btcec.AddNonConst(&start, &kq, &want)
			got := start
			v.addMul(&k, &got)
			if !samePoint(&got, &want) {
				kb := k.Bytes()
				t.Fatalf("k = %x, start %d: different points", kb, i)
			}
		}
	}
}

// addedPoints returns the first two points addMul adds for k, in its order.
func addedPoints(v *KeyVerifier, k *btcec.ModNScalar) []btcec.JacobianPoint {
	k1, k2, neg1, neg2, _ := splitK(k)
	d1, d2 := recode(k1), recode(k2)
	var out []btcec.JacobianPoint
	for i := range digits {
		for _, h := range []struct {
			d        int8
			neg, phi bool
		}{{d1[i], neg1, false}, {d2[i], neg2, true}} {
			if h.d != 0 && len(out) < 2 {
				var pt btcec.JacobianPoint
				pt.Z.SetInt(1)
				v.lookup(&pt, i, h.d, h.neg, h.phi)
				out = append(out, pt)
			}
		}
	}
	return out
}

func neg(p btcec.JacobianPoint) btcec.JacobianPoint {
	p.Y.Negate(1).Normalize()
	return p
}

// scaleZ rewrites p as (X*l^2, Y*l^3, Z*l), the same point.
func scaleZ(p *btcec.JacobianPoint, l *btcec.FieldVal) {
	var l2, l3 btcec.FieldVal
	l2.SquareVal(l)
	l3.Mul2(&l2, l)
	p.X.Mul(&l2).Normalize()
	p.Y.Mul(&l3).Normalize()
	p.Z.Mul(l).Normalize()
}

func isInfinity(p *btcec.JacobianPoint) bool {
	return (p.X.IsZero() && p.Y.IsZero()) || p.Z.IsZero()
}

func samePoint(a, b *btcec.JacobianPoint) bool {
	if isInfinity(a) || isInfinity(b) {
		return isInfinity(a) && isInfinity(b)
	}
	x, y := *a, *b
	x.ToAffine()
	y.ToAffine()
	return x.X.Equals(&y.X) && x.Y.Equals(&y.Y)
}
