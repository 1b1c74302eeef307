// Package sigcheck verifies ECDSA signatures over secp256k1 against one
// fixed public key faster than a general verifier, by spending memory on a
// table of multiples of that key. The payee of a channel checks thousands of
// payment signatures against the same payer key, so the table is built once
// per channel and used for every payment.
//
// # The check
//
// Verify follows SEC 1 v2 section 4.1.4 and algorithm 4.30 of Hankerson,
// Menezes and Vanstone, "Guide to Elliptic Curve Cryptography" [GECC], in the
// form github.com/decred/dcrd/dcrec/secp256k1/v4 ecdsa.Signature.Verify uses
// (the code behind btcec/v2), and accepts exactly the signatures that Verify
// accepts:
//
//  1. reject if r or s is zero (both are already reduced mod N by the caller's
//     parser);
//  2. e = the first 32 bytes of the hash, big endian, reduced mod N
//     (ModNScalar.SetByteSlice, as dcrd);
//  3. w = s^-1 mod N, u1 = e*w mod N, u2 = r*w mod N;
//  4. X = u1*G + u2*Q; reject if X is the point at infinity;
//  5. accept if r*Z^2 == X.x (mod P) (X in Jacobian coordinates, so no
//     inversion: Greg Maxwell's trick, as dcrd), or, when r + N < P, if
//     (r+N)*Z^2 == X.x (mod P): the affine x of X reduced mod N equals r.
//
// Only step 4 differs from dcrd, and only in how u2*Q is computed: the group
// element X is the same, and the steps after it are dcrd's own code path on
// dcrd's own point representation, so the accept/reject set is the same.
//
// # The table
//
// u1*G is dcrd's ScalarBaseMultNonConst (its precomputed byte tables of G:
// 32 mixed additions). For u2*Q, dcrd's ScalarMultNonConst splits u2 with the
// GLV endomorphism and walks its NAF: about 128 doublings and 86 additions.
// Here u2 is split the same way (GECC algorithm 3.74, phi(x, y) = (beta*x, y)
// = lambda*(x, y)) into u2 = k1 + k2*lambda (mod N) with |k1|, |k2| < 2^132,
// and each half is written in signed base-32 digits d_i in [-15, 16]
// (i = 0..27: 27 five-bit windows plus a carry). With the table
//
//	T[i][j-1] = j * 32^i * Q   for i = 0..27, j = 1..16
//
// stored in affine coordinates (Z = 1, normalized, built in Jacobian
// coordinates and converted with a single field inversion by Montgomery's
// batch-inversion trick), u2*Q = sum_i d1_i*T[i] + sum_i d2_i*phi(T[i]): about
// 54 mixed additions (dcrd's AddNonConst takes its Z2 = 1 path) and no
// doubling at all. A negative digit (or a negative half) negates y; phi costs
// one field multiplication per lookup. The GLV split halves the table (one
// table serves both halves through phi); signed digits halve it again.
//
// Memory: 28*16 affine points of two FieldVals (40 bytes each), 35,840 bytes
// per key (TableBytes), 35 MB for 1,000 channels. Measured in instructions
// (valgrind) per verification: stock 1.54 M; keyed 0.80 M with 4-bit windows
// (21,760 bytes), 0.71 M with 5-bit windows (this table), 0.64 M with 6-bit
// windows (58,880 bytes). Building the table costs 6.7 M instructions, about
// 4.4 stock verifications (BenchmarkNewKeyVerifier), repaid within the first
// ten payments of a channel.
//
// A key that is not on the curve (btcec.NewPublicKey does not check) gets no
// table: Verify then calls dcrd's Verify itself, so the semantics stay
// identical in every case; so does the (never observed) case of a GLV half
// longer than the table.
//
// [GECC]: https://link.springer.com/book/10.1007/b97644
// SEC 1: https://www.secg.org/sec1-v2.pdf
package sigcheck
