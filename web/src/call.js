// call.js: a call from either side, as paidcall does it in Go
// (paidcall/leg.go Dial/Answer, paidcall.go TransportOf): the caller
// offers audio and the paysip DataChannel with "Supported: paysip", pays
// over the DataChannel with paysip.pay; the payee answers, takes the
// payment transport the offer chose (a DataChannel, or in-dialog MESSAGE
// without one) and serves it with paysip.serve.
import { SessionState } from "sip.js";
import { callFailure, PaysipError } from "./errors.js";
import { API_CONTENT_TYPE, PAYMENT_LATE_REASON, statusError } from "./phone.js";
import { parseTerms } from "./terms.js";
import { call } from "./wasm.js";

// ensureMic asks for the microphone before the call, so a refusal is
// told as such (not as a failed call).
export async function ensureMic() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    throw new PaysipError("this page cannot use a microphone here: it must be served over HTTPS (or from localhost)", "mic_refused");
  }
  try {
    const s = await md.getUserMedia({ audio: true, video: false });
    s.getTracks().forEach((t) => t.stop());
  } catch (e) {
    const missing = e && (e.name === "NotFoundError" || e.name === "OverconstrainedError");
    throw new PaysipError(e && e.message ? e.message : String(e), missing ? "mic_missing" : "mic_refused");
  }
}

// transportOf is paidcall.TransportOf: a DataChannel when the offer has
// an m=application line for one (RFC 8841), in-dialog MESSAGE otherwise.
export function transportOf(sdp) {
  for (const line of String(sdp || "").split(/\r?\n/)) {
    const m = /^m=application\s+(\d+)\s+\S+\s+(.*)$/.exec(line);
    if (m && m[1] !== "0" && m[2].split(/\s+/).includes("webrtc-datachannel")) return "datachannel";
  }
  return "message";
}

function stateWatcher(session) {
  let established, terminated;
  const est = new Promise((r) => (established = r));
  const end = new Promise((r) => (terminated = r));
  session.stateChange.addListener((s) => {
    if (s === SessionState.Established) established();
    if (s === SessionState.Terminated) terminated();
  });
  return { established: est, ended: end };
}

// newConn is paysip.conn(sendFn); an error comes back as __paysipError.
function newConn(paysip, send) {
  const c = paysip.conn(send);
  if (c && c.__paysipError) throw c.__paysipError;
  return c;
}

// dataChannelConn makes the payment protocol's agent.Conn on an open
// DataChannel.
function dataChannelConn(paysip, dc) {
  dc.binaryType = "arraybuffer";
  const conn = newConn(paysip, (bytes) => {
    if (dc.readyState === "open") dc.send(bytes);
  });
  dc.addEventListener("message", (e) => conn.receive(typeof e.data === "string" ? e.data : new Uint8Array(e.data)));
  dc.addEventListener("close", () => conn.close("the DataChannel closed"));
  return conn;
}

function whenOpen(dc, ended) {
  if (dc.readyState === "open") return Promise.resolve(true);
  return new Promise((resolve) => {
    dc.addEventListener("open", () => resolve(true), { once: true });
    dc.addEventListener("close", () => resolve(false), { once: true });
    ended.then(() => resolve(false));
    setTimeout(() => resolve(false), 20000);
  });
}

function attachAudio(session, audio) {
  const sdh = session.sessionDescriptionHandler;
  if (sdh && sdh.remoteMediaStream && audio) {
    audio.srcObject = sdh.remoteMediaStream;
    audio.play().catch(() => {
      // Autoplay refused: the next click plays it.
      document.addEventListener("click", () => audio.play().catch(() => {}), { once: true });
    });
  }
}

// placeCall calls target (a sip.js URI). paid: pay with plan {priceSatPerMin
// (what the caller saw), maxPriceSatPerMin (its limit), seconds,
// budgetSat}. Without paid it is a plain call, which a priced address
// answers 402: the error carries the terms (err.terms).
export async function placeCall({ phone, paysip, view, target, paid, plan }) {
  const targetStr = target.toString();
  await ensureMic();
  let gotDC;
  const dcP = new Promise((r) => (gotDC = r));
  const inviter = phone.inviter(target, { paid, onDataChannel: gotDC });
  const { established, ended } = stateWatcher(inviter);
  let rejected = null;
  let byeReason = "";
  inviter.delegate = {
    onBye: (bye) => {
      byeReason = bye.request.getHeader("Reason") || "";
    },
  };
  view.calling(inviter, targetStr);
  await inviter.invite({
    requestDelegate: {
      onReject: (res) => {
        rejected = statusError(res, `calling ${targetStr}`);
      },
    },
  });
  const up = await Promise.race([established.then(() => true), ended.then(() => false)]);
  if (!up) {
    if (rejected && rejected.status === 402) {
      let terms = null;
      let why = "";
      try {
        terms = parseTerms(rejected.headers.terms);
      } catch (e) {
        why = e.message;
      }
      const err = new PaysipError(
        terms
          ? `${targetStr} asks payment (402): ${terms.priceSatPerMin.toLocaleString("en-US")} sat/min` +
              (terms.minDepositSat ? `, a pool of at least ${terms.minDepositSat.toLocaleString("en-US")} sat` : "") +
              (terms.transports.length ? `, over ${terms.transports.join(" or ")}` : "")
          : `${targetStr} asks payment (402) with terms that cannot be read: ${why}`,
        "payment_required",
      );
      err.terms = terms;
      throw err;
    }
    if (rejected) throw callFailure(rejected, targetStr);
    if (view.hungUp) throw new PaysipError("you hung up before an answer", "cancelled");
    throw new PaysipError(`${targetStr} is unreachable: no answer`, "payee_unreachable");
  }
  attachAudio(inviter, view.audio);
  view.established();
  if (!paid) {
    view.onHangup(() => inviter.bye().catch(() => {}));
    await ended;
    return { free: true };
  }
  const dc = await Promise.race([dcP, ended.then(() => null)]);
  if (!dc || !(await whenOpen(dc, ended))) {
    inviter.bye().catch(() => {});
    throw new PaysipError(`the payment DataChannel with ${targetStr} did not open`, "call_dropped");
  }
  const conn = dataChannelConn(paysip, dc);
  view.price(plan.priceSatPerMin || plan.maxPriceSatPerMin);
  const abort = new AbortController();
  let hungUp = false;
  view.onHangup(() => {
    hungUp = true;
    abort.abort();
    // A build of the wallet that does not take the signal: the channel
    // ends when its connection does.
    setTimeout(() => conn.close("hang-up"), 8000);
  });
  ended.then(() => {
    abort.abort();
    setTimeout(() => conn.close("the call ended"), 500);
  });
  let res;
  try {
    res = await call(
      paysip.pay({
        conn,
        peer: targetStr,
        priceSatPerMin: plan.priceSatPerMin,
        maxPriceSatPerMin: plan.maxPriceSatPerMin,
        seconds: plan.seconds || 0,
        budgetSat: plan.budgetSat || 0,
        maxPoolSat: plan.maxPoolSat || 0,
        close: true,
        signal: abort.signal,
        onOpen: (info) => view.open(info),
        onTick: (tick) => view.tick(tick),
      }),
    );
  } catch (e) {
    inviter.bye().catch(() => {});
    if (!hungUp && (byeReason || inviter.state === SessionState.Terminated) && !e.code) {
      throw new PaysipError(`${targetStr} hung up${byeReason ? ` (${reasonText(byeReason)})` : ""}: ${e.message}`, "call_dropped");
    }
    throw e;
  }
  if (inviter.state === SessionState.Established) inviter.bye().catch(() => {});
  const dropped = !hungUp && inviter.state !== SessionState.Established && res && res.end === "hang-up";
  return { ...res, dropped, byeReason: reasonText(byeReason) };
}

function reasonText(r) {
  if (!r) return "";
  if (r === PAYMENT_LATE_REASON || /text="payment late"/.test(r)) return "payment late";
  const m = /text="([^"]*)"/.exec(r);
  return m ? m[1] : r;
}

// servePaidCall answers inv as a priced payee: audio, the payment over
// the transport the offer chose, paysip.serve until the caller closes,
// goes away or falls behind; then hangs up (with the payment-late Reason
// when it fell behind).
export async function servePaidCall({ paysip, view, inv, priceSatPerMin }) {
  const from = inv.remoteIdentity.uri.toString();
  const transport = transportOf(inv.request.body);
  try {
    await ensureMic();
  } catch (e) {
    inv.reject({ statusCode: 480, reasonPhrase: "Microphone Refused" }).catch(() => {});
    throw e;
  }
  let gotDC;
  const dcP = new Promise((r) => (gotDC = r));
  const { ended } = stateWatcher(inv);
  let conn = null;
  const early = [];
  inv.delegate = {
    onMessage: (m) => {
      const ct = (m.request.getHeader("Content-Type") || "").toLowerCase();
      if (transport !== "message" || !ct.startsWith(API_CONTENT_TYPE)) {
        m.reject({ statusCode: 415 }).catch(() => {});
        return;
      }
      m.accept().catch(() => {});
      if (conn) conn.receive(m.request.body);
      else if (early.length < 16) early.push(m.request.body);
    },
  };
  view.calling(inv, from, "payee");
  await inv.accept({
    sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false }, onDataChannel: gotDC },
  });
  attachAudio(inv, view.audio);
  view.established();
  view.price(priceSatPerMin);
  if (transport === "datachannel") {
    const dc = await Promise.race([dcP, ended.then(() => null)]);
    if (!dc || !(await whenOpen(dc, ended))) {
      inv.bye().catch(() => {});
      throw new PaysipError(`the payment DataChannel with ${from} did not open`, "call_dropped");
    }
    conn = dataChannelConn(paysip, dc);
  } else {
    conn = newConn(paysip, (bytes) => {
      const content = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
      inv.message({ requestOptions: { body: { contentDisposition: "render", contentType: API_CONTENT_TYPE, content } } }).catch(() => {});
    });
    early.forEach((b) => conn.receive(b));
  }
  const abort = new AbortController();
  let hungUp = false;
  view.onHangup(() => {
    hungUp = true;
    abort.abort();
    setTimeout(() => conn.close("hang-up"), 3000);
  });
  // The caller hung up: its last messages (close) may still be on their
  // way; the session ends when its connection does, and settles then.
  ended.then(() => setTimeout(() => conn.close("the caller hung up"), 1500));
  let res = null;
  let err = null;
  try {
    res = await call(paysip.serve({ conn, peer: from, signal: abort.signal, onPayment: (p) => view.tick(p) }));
  } catch (e) {
    err = e;
  }
  if (inv.state === SessionState.Established) {
    const late = (err && err.code === "payment_late") || (res && res.hangupReason);
    const opts = late ? { requestOptions: { extraHeaders: [`Reason: ${PAYMENT_LATE_REASON}`] } } : undefined;
    inv.bye(opts).catch(() => {});
  }
  if (err && !hungUp) throw err;
  return { ...(res || {}), transport };
}
