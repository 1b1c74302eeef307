// view.js: small DOM helpers and the call screen (both roles).
import { BalanceChart } from "./chart.js";
import { fmtSat } from "./errors.js";

export const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

// figure sets a figure's text and its machine-readable value.
export function figure(id, text, data = {}) {
  const el = $(id);
  if (!el) return;
  el.textContent = text;
  for (const [k, v] of Object.entries(data)) el.dataset[k] = String(v);
}

export function setState(id, state, text) {
  figure(id, text, { state });
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : Number(v || 0));

export class CallView {
  constructor() {
    this.chart = new BalanceChart($("call-chart"));
    this.audio = $("call-audio");
    this.timer = null;
    this.hangupFns = [];
    $("call-hangup").addEventListener("click", () => this.hangup());
    this.busy = false;
  }

  reset(role, peer) {
    clearInterval(this.timer);
    this.timer = null;
    this.hungUp = false;
    this.hangupFns = [];
    this.started = 0;
    this.capacity = 0;
    this.paid = 0;
    this.base = 0;
    this.channelPaid = 0;
    this.poolLeft = undefined;
    this.busy = true;
    document.getElementById("call-screen").hidden = false;
    figure("call-role", role === "payee" ? "Paid call from" : "Calling", { role });
    $("call-screen").dataset.role = role === "payee" ? "payee" : "payer";
    const ce = $("call-error");
    ce.hidden = true;
    ce.textContent = "";
    ce.dataset.code = "";
    figure("call-peer", peer);
    figure("call-elapsed", "0:00", { seconds: 0 });
    figure("call-paid", "0 sat", { sat: 0 });
    figure("call-capacity-sat", "–", { sat: 0 });
    figure("call-payer-sat", "–", { sat: 0 });
    figure("call-payee-sat", "–", { sat: 0 });
    figure("call-channel", "", { channelId: "" });
    figure("call-result", "", { paidSat: 0, settlementTxid: "" });
    $("call-hangup").disabled = false;
    this.chart.reset(0);
  }

  calling(session, peer, role = "caller") {
    this.reset(role, peer);
    this.session = session;
    this.state("calling", role === "payee" ? "answering…" : "ringing…");
    // Before an answer, hanging up cancels the INVITE.
    this.onHangup(() => {
      if (session.state === "Initial" || session.state === "Establishing") {
        (session.cancel ? session.cancel() : session.reject()).catch(() => {});
      }
    });
  }

  // state shows the call's state: call-state's data-state is the detailed
  // one, call-screen's the coarse one (connecting, paying, ended, failed).
  state(s, text) {
    setState("call-state", s, text);
    const coarse = { calling: "connecting", connected: "connecting", "hanging-up": "paying", dropped: "ended" }[s] || s;
    $("call-screen").dataset.state = coarse;
  }

  price(satPerMin) {
    figure("call-price", satPerMin ? satPerMin.toLocaleString("en-US") + " sat" : "free", { sat: satPerMin || 0, satPerMin: satPerMin || 0 });
  }

  // fail shows why the call failed (err.code in data-code).
  fail(code, message) {
    const el = $("call-error");
    el.textContent = message;
    el.dataset.code = code || "";
    el.hidden = false;
  }

  established() {
    this.state("connected", "connected");
    this.startClock();
  }

  startClock() {
    if (this.timer) return;
    this.started = Date.now();
    this.timer = setInterval(() => {
      const s = Math.floor((Date.now() - this.started) / 1000);
      figure("call-elapsed", `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`, { seconds: s });
    }, 250);
  }

  // open: the channel is open (info: paidcall.Result so far: channelId,
  // capacitySat; a resumed channel's paidSat is what earlier calls paid).
  open(info) {
    this.state("paying", "paying");
    if (info.channelId) figure("call-channel", info.channelId, { channelId: info.channelId });
    this.capacity = num(info.capacitySat);
    this.base = num(info.paidSat);
    this.channelPaid = this.base;
    if (info.priceSatPerMin) this.price(num(info.priceSatPerMin));
    this.show();
  }

  // tick: a payment: the payer's agent.Tick (paidSat: the channel's total,
  // poolLeft) or the payee's onPayment ({channelId, paidSat, capacitySat}).
  tick(t) {
    if (t.capacitySat) this.capacity = num(t.capacitySat);
    if (t.channelId && !$("call-channel").textContent) figure("call-channel", t.channelId, { channelId: t.channelId });
    if (t.priceSatPerMin) this.price(num(t.priceSatPerMin));
    this.channelPaid = num(t.paidSat);
    const left = t.poolLeftSat ?? t.poolLeft;
    this.poolLeft = left === undefined ? undefined : num(left);
    this.paid = Math.max(0, this.channelPaid - (this.base || 0));
    if (["calling", "connected"].includes($("call-state").dataset.state)) this.state("paying", "paying");
    if (!this.timer) this.startClock();
    this.show();
    this.chart.add((Date.now() - this.started) / 1000, this.channelPaid, this.capacity);
  }

  show() {
    figure("call-paid", fmtSat(this.paid), { sat: this.paid });
    const payee = this.channelPaid || 0;
    figure("call-payee-sat", fmtSat(payee), { sat: payee });
    if (this.capacity) {
      const payer = this.poolLeft !== undefined ? this.poolLeft : Math.max(0, this.capacity - payee);
      figure("call-capacity-sat", fmtSat(this.capacity), { sat: this.capacity });
      figure("call-payer-sat", fmtSat(payer), { sat: payer });
    }
  }

  onHangup(fn) {
    this.hangupFns.push(fn);
  }

  hangup() {
    if (this.hungUp) return;
    this.hungUp = true;
    this.state("hanging-up", "hanging up…");
    for (const fn of this.hangupFns) fn();
  }

  // ended: the call is over; result is a sentence.
  ended(state, result, paidSat, settlementTxid = "") {
    clearInterval(this.timer);
    this.timer = null;
    this.busy = false;
    if (paidSat !== undefined) {
      this.paid = num(paidSat);
      this.show();
    }
    this.state(state, state === "failed" ? "failed" : "ended");
    figure("call-result", result, { paidSat: this.paid, settlementTxid: settlementTxid || "" });
    $("call-hangup").disabled = true;
  }
}
