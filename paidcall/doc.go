// Package paidcall is a paid call, once, for every program that makes or
// answers one (paysip payee, paysip call, the demo, next the browser's
// WebAssembly build): which transport the SDP offer chose for the payment
// protocol, the size of a new pool, opening or resuming a channel,
// metering the call second by second, and how it ends (the caller's
// length, budget or pool; the payee hanging up on a late payer, with its
// Reason header).
//
// The core (this file's package without build tags) works on an
// agent.Conn and knows no sockets; leg.go (not for GOOS=js) places and
// answers the call itself with sipua and rtcconn, and reads which
// transport an offer chose (TransportOf, with pion/sdp: kept out of the
// browser build).
//
// A caller:
//
//	leg, err := paidcall.Dial(ctx, ua, to, rtcconn.Config{}, sipext.TransportDataChannel)
//	caller := &paidcall.Caller{Payer: payer}
//	res, err := caller.Pay(ctx, leg.Conn, to.String(), paidcall.Plan{PriceSatPerMin: seen, Seconds: 60})
//	leg.Hangup(ctx, "")
//
// A payee answers in its OnInvite handler with Answer, then Serve.
package paidcall
