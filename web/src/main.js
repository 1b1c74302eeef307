// main.js: the paysip web app. Pages: sign in (or anonymous), wallet,
// directory (live over SIP), call, go premium, channels. The page talks
// to nothing but its own server: its files, and SIP over the WebSocket.
import { placeCall, servePaidCall } from "./call.js";
import { explain, fmtSat, PaysipError } from "./errors.js";
import { Phone } from "./phone.js";
import { drawQR } from "./qr.js";
import { $, CallView, figure, setState } from "./view.js";
import { call, loadPaysip } from "./wasm.js";

const cfg = JSON.parse(document.getElementById("paysip-config").textContent || "{}");
const app = { cfg, phone: null, paysip: null, walletReady: false, premium: null, directory: [], earned: 0, calls: 0 };
let view;

// ---- messages ----------------------------------------------------------

function showError(err, ctx = {}) {
  const el = document.getElementById("error");
  const text = typeof err === "string" ? err : explain(err, { network: cfg.network, ...ctx });
  el.textContent = text;
  el.dataset.code = (err && err.code) || "";
  el.hidden = false;
  console.warn("paysip:", text, err);
}

function clearError() {
  const el = document.getElementById("error");
  el.hidden = true;
  el.textContent = "";
  el.dataset.code = "";
}

function notice(text) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.hidden = !text;
}

// guard runs an action from a control, showing its failure.
function guard(fn, ctx) {
  return async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    clearError();
    try {
      await fn(ev);
    } catch (e) {
      showError(e, typeof ctx === "function" ? ctx() : ctx);
    }
  };
}

const on = (id, ev, fn) => $(id).addEventListener(ev, fn);

// ---- pages -------------------------------------------------------------

function show(page) {
  for (const s of document.querySelectorAll("section.page")) s.hidden = s.id !== `page-${page}`;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.page === page);
  if (page === "channels") refreshChannels().catch((e) => showError(e));
  if (page === "wallet" && app.walletReady) refreshWallet().catch((e) => showError(e));
}

for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => {
    if (!app.phone) return show("signin");
    location.hash = b.dataset.page;
  });
}
window.addEventListener("hashchange", () => app.phone && show(location.hash.slice(1) || "call"));

// ---- sign in -----------------------------------------------------------

async function signIn(account) {
  const phone = new Phone(cfg, account, {
    onInvite: (inv) => incoming(inv),
    onDisconnect: (err) => {
      setState("sip-status", "offline", "disconnected");
      if (err) showError(new PaysipError(`lost the connection to the server (${err.message}); reconnecting…`, "server_unreachable"));
      setTimeout(() => reconnect(phone), 2000);
    },
    onConnect: () => {},
  });
  setState("sip-status", "connecting", "connecting…");
  try {
    await phone.start();
  } catch (e) {
    setState("sip-status", "offline", "not signed in");
    phone.stop().catch(() => {});
    throw e;
  }
  app.phone = phone;
  setState("sip-status", account ? "registered" : "anonymous", account ? `signed in as ${phone.aor}` : "anonymous");
  $("signout").hidden = false;
  phone.followDirectory(renderDirectory, (st, why) => {
    setState("directory-state", st, { live: "live", pending: "subscribing…", ended: "ended, again in a moment", bad: "unreadable" }[st] || st);
    if (why) showError(new PaysipError(why, "directory"));
  });
  show(location.hash.slice(1) || "call");
  startWallet()
    .then(() => (document.documentElement.dataset.paysip = "ready"))
    .catch((e) => {
      showError(e);
      fatal(e);
    });
}

// fatal: the page could not start (the wallet did not load).
function fatal(e) {
  document.documentElement.dataset.paysip = "error";
  const el = $("fatal");
  el.textContent = explain(e, { network: cfg.network });
  el.hidden = false;
}

async function reconnect(phone) {
  if (app.phone !== phone) return;
  try {
    await phone.ua.reconnect();
    if (phone.registerer) await phone.register(phone.registerer, "signing in again");
    phone.refollow();
    if (app.premium) await goPremium(app.premium);
    setState("sip-status", phone.account ? "registered" : "anonymous", phone.account ? `signed in as ${phone.aor}` : "anonymous");
    clearError();
  } catch (e) {
    setTimeout(() => reconnect(phone), 5000);
  }
}

on("signin-anonymous", "click", guard(() => signIn(null)));
document.getElementById("signin-form").addEventListener(
  "submit",
  guard(async () => {
    const user = $("signin-user").value.trim();
    const password = $("signin-password").value;
    await signIn({ user, password });
  }),
);
on(
  "signout",
  "click",
  guard(async () => {
    const p = app.phone;
    app.phone = null;
    app.premium = null;
    await p.stop();
    location.reload();
  }),
);
window.addEventListener("pagehide", () => app.phone && app.phone.stop());

// ---- wallet ------------------------------------------------------------

function walletState(state, text) {
  setState("wallet-state", state, text);
  document.getElementById("wallet-setup").hidden = !(state === "none" || state === "locked");
  $("wallet-create").hidden = state !== "none";
  document.getElementById("create-pass").hidden = state !== "none";
  document.getElementById("unlock-pass").hidden = state !== "locked";
  document.getElementById("wallet-restore-box").hidden = state !== "none";
  $("wallet-unlock").hidden = state !== "locked";
  document.getElementById("wallet-main").hidden = state !== "ready";
}

async function startWallet() {
  walletState("loading", "loading the wallet…");
  try {
    app.paysip = await loadPaysip();
  } catch (e) {
    walletState("unavailable", "unavailable");
    throw e;
  }
  await call(
    app.paysip.init({
      network: cfg.network,
      domain: cfg.domain,
      chainRequest: (json) =>
        app.phone ? app.phone.chainRequest(json) : Promise.reject(new PaysipError("not connected", "node_unreachable")),
    }),
  );
  if (!(await call(app.paysip.wallet.exists()))) {
    walletState("none", "no wallet yet");
    return;
  }
  try {
    await call(app.paysip.wallet.unlock(""));
  } catch (e) {
    if (e.code === "bad_passphrase" || e.code === "locked") {
      walletState("locked", "locked: enter its passphrase");
      return;
    }
    throw e;
  }
  await walletReady();
}

async function walletReady() {
  app.walletReady = true;
  walletState("ready", "ready");
  document.getElementById("faucet-box").hidden = cfg.network !== "regtest";
  await newAddress(false);
  await refreshWallet();
  // What a previous page left: a payee's open channels settle now, a
  // payer's refunds are taken when their lock has passed.
  call(app.paysip.settleOpen())
    .then((done) => done && done.length && notice(`settled ${done.length} channel(s) left open by a previous page`))
    .catch((e) => showError(e));
  const refunds = () => call(app.paysip.watchRefunds()).catch((e) => showError(e));
  refunds();
  setInterval(() => app.phone && refunds(), 180000);
  // Every 10 s, not during a call: the SIP API's rate is per source
  // address, and the call's own chain requests come first.
  setInterval(() => app.phone && !view.busy && refreshWallet().catch(() => {}), 10000);
}

async function refreshWallet() {
  const b = await call(app.paysip.wallet.balance());
  figure("wallet-balance", fmtSat(b.spendableSat), {
    sat: b.spendableSat,
    spendableSat: b.spendableSat,
    confirmedSat: b.confirmedSat,
    unconfirmedSat: b.unconfirmedSat,
  });
  figure("wallet-confirmed", fmtSat(b.confirmedSat), { sat: b.confirmedSat });
  figure("wallet-unconfirmed", fmtSat(b.unconfirmedSat), { sat: b.unconfirmedSat });
  return b;
}

// The receive address is kept across loads (each receiveAddress() hands
// out the next one: a restore looks 20 unused addresses ahead).
const ADDRESS_KEY = "paysip.receiveAddress";

async function newAddress(fresh = true) {
  let addr = fresh ? "" : localStorage.getItem(ADDRESS_KEY) || "";
  if (!addr) {
    addr = await call(app.paysip.wallet.receiveAddress());
    localStorage.setItem(ADDRESS_KEY, addr);
  }
  figure("wallet-address", addr, { address: addr });
  drawQR($("wallet-qr"), `bitcoin:${addr}`);
}

function showMnemonic(words) {
  figure("wallet-mnemonic", words);
  document.getElementById("wallet-mnemonic-box").hidden = false;
}

on(
  "wallet-create",
  "click",
  guard(async () => {
    const { mnemonic } = await call(app.paysip.wallet.create($("wallet-passphrase").value));
    localStorage.removeItem(ADDRESS_KEY);
    $("wallet-passphrase").value = "";
    showMnemonic(mnemonic);
    await walletReady();
  }),
);
on("wallet-mnemonic-done", "click", () => {
  document.getElementById("wallet-mnemonic-box").hidden = true;
  figure("wallet-mnemonic", "");
});
on(
  "wallet-unlock",
  "click",
  guard(async () => {
    await call(app.paysip.wallet.unlock($("wallet-unlock-passphrase").value));
    $("wallet-unlock-passphrase").value = "";
    await walletReady();
  }),
);
on(
  "wallet-restore",
  "click",
  guard(async () => {
    const words = $("wallet-restore-mnemonic").value.trim().split(/\s+/).join(" ");
    await call(app.paysip.wallet.restore(words, $("wallet-passphrase").value));
    localStorage.removeItem(ADDRESS_KEY);
    $("wallet-restore-mnemonic").value = "";
    $("wallet-passphrase").value = "";
    await walletReady();
  }),
);
on("wallet-refresh", "click", guard(refreshWallet));
on(
  "wallet-new-address",
  "click",
  guard(() => newAddress(true)),
);
on(
  "wallet-backup",
  "click",
  guard(async () => {
    const words = await call(app.paysip.wallet.mnemonic($("wallet-backup-passphrase").value));
    $("wallet-backup-passphrase").value = "";
    showMnemonic(words);
  }),
);
on(
  "faucet-submit",
  "click",
  guard(async () => {
    if (cfg.network !== "regtest") throw new PaysipError("the faucet is for regtest only", "no_faucet");
    const amount = Number($("faucet-amount").value);
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new PaysipError("the amount must be a whole number of satoshis", "bad_amount");
    const r = await call(app.paysip.wallet.faucet(amount));
    figure("faucet-txid", r.txid || "");
    notice(`faucet paid ${fmtSat(amount)}: ${r.txid}`);
    await refreshWallet();
  }),
);
document.getElementById("send-form").addEventListener(
  "submit",
  guard(async () => {
    const amount = Number($("send-amount").value);
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new PaysipError("the amount must be a whole number of satoshis", "bad_amount");
    const { txid } = await call(app.paysip.wallet.send($("send-address").value.trim(), amount));
    figure("send-txid", txid);
    notice(`sent ${fmtSat(amount)}: ${txid}`);
    await refreshWallet();
  }),
);

// ---- directory ---------------------------------------------------------

function renderDirectory(doc) {
  // One row per address (a payee in two tabs registers two contacts).
  const seen = new Set();
  app.directory = (Array.isArray(doc.entries) ? doc.entries : []).filter(
    (e) => e && e.aor && e.price_sat_per_min > 0 && !seen.has(e.aor) && seen.add(e.aor),
  );
  const tbody = $("directory-list");
  tbody.replaceChildren();
  for (const e of app.directory) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "directory-entry";
    tr.dataset.aor = e.aor;
    tr.dataset.price = String(e.price_sat_per_min);
    tr.dataset.priceSatPerMin = String(e.price_sat_per_min);
    const cells = [e.name || "", e.aor, `${fmtSat(e.price_sat_per_min)}/min`];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text; // names come from anyone: text only
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Call";
    b.dataset.testid = "directory-call";
    b.addEventListener(
      "click",
      guard(() => {
        $("call-to").value = e.aor;
        $("call-max-price").value = String(e.price_sat_per_min);
        location.hash = "call";
        return startCall();
      }),
    );
    td.appendChild(b);
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
  $("directory-empty").hidden = app.directory.length > 0;
  figure("directory-state", $("directory-state").textContent, { count: app.directory.length });
}

// ---- calls -------------------------------------------------------------

function callPlan() {
  const limit = Number($("call-max-price").value || 0);
  const seconds = Number($("call-seconds").value || 0);
  const budget = Number($("call-budget").value || 0);
  for (const [n, v] of [
    ["price limit", limit],
    ["seconds", seconds],
    ["budget", budget],
  ]) {
    if (!Number.isSafeInteger(v) || v < 0) throw new PaysipError(`the ${n} must be a whole number`, "bad_input");
  }
  return { limit, seconds, budget };
}

async function startCall() {
  if (view.busy) throw new PaysipError("a call is in progress: hang up first", "busy");
  document.getElementById("call-terms").hidden = true;
  const target = app.phone.target($("call-to").value);
  const targetStr = target.toString();
  const { limit, seconds, budget } = callPlan();
  const listed = app.directory.find((e) => e.aor === targetStr);
  const paid = limit > 0;
  if (paid) {
    if (!app.walletReady) throw new PaysipError("a paid call needs your wallet: open the Wallet page first (create, restore or unlock it)", "wallet_not_ready");
    if (listed && listed.price_sat_per_min > limit) {
      throw new PaysipError(`${targetStr} is listed at ${fmtSat(listed.price_sat_per_min)}/min`, "price_above_limit");
    }
  }
  const price = listed ? listed.price_sat_per_min : limit;
  const ctx = { target: targetStr, limit };
  try {
    const res = await placeCall({
      phone: app.phone,
      paysip: app.paysip,
      view,
      target,
      paid,
      plan: { priceSatPerMin: price, maxPriceSatPerMin: limit, seconds, budgetSat: budget },
    });
    if (res.free) {
      view.ended("ended", `call ended (not paid: ${targetStr} asked no payment)`);
      return;
    }
    const closed = res.closed && (res.closed.txid || res.closed.settlementTxid || res.closed.txID);
    const lines = [`paid ${fmtSat(res.paidSat)} in ${res.payments || 0} payments, ended by ${res.end || "hang-up"}`];
    if (closed) lines.push(`settled on chain: ${closed}`);
    if (res.dropped) {
      view.ended("dropped", lines.join("; "), res.paidSat, closed);
      showError(new PaysipError(`${targetStr} hung up${res.byeReason ? ` (${res.byeReason})` : ""}; you paid ${fmtSat(res.paidSat)}`, "call_dropped"), ctx);
    } else {
      view.ended("ended", lines.join("; "), res.paidSat, closed);
    }
    refreshWallet().catch(() => {});
  } catch (e) {
    if (e.code === "payment_required" && e.terms) {
      figure("call-terms-text", `${explain(e, ctx)}. Pay it?`);
      $("call-accept-terms").dataset.price = String(e.terms.priceSatPerMin);
      document.getElementById("call-terms").hidden = false;
    }
    view.ended("failed", explain(e, ctx), view.paid);
    view.fail(e.code, explain(e, ctx));
    throw e;
  }
}

document.getElementById("call-form").addEventListener(
  "submit",
  guard(startCall, () => ({ target: $("call-to").value, limit: Number($("call-max-price").value || 0) })),
);
on(
  "call-accept-terms",
  "click",
  guard(
    () => {
      $("call-max-price").value = $("call-accept-terms").dataset.price;
      document.getElementById("call-terms").hidden = true;
      return startCall();
    },
    () => ({ target: $("call-to").value, limit: Number($("call-max-price").value || 0) }),
  ),
);

// incoming: a paid call when premium (answered at once, as `paysip
// payee` does), otherwise a plain call the person answers or declines.
function incoming(inv) {
  const from = inv.remoteIdentity.uri.toString();
  if (view.busy) {
    inv.reject({ statusCode: 486, reasonPhrase: "Busy Here" }).catch(() => {});
    return;
  }
  if (app.premium && app.walletReady) {
    clearError();
    location.hash = "call";
    view.busy = true;
    servePaidCall({ paysip: app.paysip, view, inv, priceSatPerMin: app.premium.priceSatPerMin })
      .then((res) => {
        if (res.error && res.code !== "cancelled" && !/context canceled/.test(res.error)) {
          // Paid, then ended badly: what was paid is kept (and settled).
          showError(new PaysipError(res.error, res.code || ""), { target: from });
        }
        app.calls++;
        app.earned += Number(res.paidSat || 0);
        figure("premium-earned", fmtSat(app.earned), { sat: app.earned });
        figure("premium-calls", String(app.calls));
        const txid = res.settlementTxId || res.settlementTxid || "";
        view.ended("ended", `earned ${fmtSat(res.paidSat)} over ${res.transport}${txid ? `; settled on chain: ${txid}` : ""}`, res.paidSat, txid);
        refreshWallet().catch(() => {});
      })
      .catch((e) => {
        view.ended("failed", explain(e, { target: from }));
        view.fail(e.code, explain(e, { target: from }));
        showError(e, { target: from });
      });
    return;
  }
  const box = document.getElementById("incoming");
  figure("incoming-from", from);
  box.hidden = false;
  location.hash = "call";
  const done = () => (box.hidden = true);
  inv.stateChange.addListener((s) => s === "Terminated" && done());
  $("incoming-answer").onclick = guard(async () => {
    done();
    view.calling(inv, from, "payee");
    await inv.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } });
    const sdh = inv.sessionDescriptionHandler;
    if (sdh && sdh.remoteMediaStream) view.audio.srcObject = sdh.remoteMediaStream;
    view.established();
    view.price(0);
    view.onHangup(() => inv.bye().catch(() => {}));
    inv.stateChange.addListener((s) => s === "Terminated" && view.ended("ended", "call ended (not paid)"));
  });
  $("incoming-decline").onclick = () => {
    done();
    inv.reject({ statusCode: 603, reasonPhrase: "Decline" }).catch(() => {});
  };
}

// ---- go premium --------------------------------------------------------

async function goPremium({ priceSatPerMin, name }) {
  const aor = app.phone.aor;
  const { contactParams } = await call(app.paysip.payee({ priceSatPerMin, aor, name }));
  // The listing names this account's own address (the server refuses
  // any other) and the name the person typed.
  const params = (contactParams || []).filter(([k]) => k !== "+paysip.aor" && k !== "+paysip.name");
  const quote = (s) => `"${String(s).replace(/["\\\x00-\x1f\x7f]/g, "")}"`;
  params.unshift(["+paysip.aor", quote(aor)]);
  if (!params.some(([k]) => k === "+paysip.price")) params.push(["+paysip.price", String(priceSatPerMin)]);
  if (name) params.push(["+paysip.name", quote(name)]);
  await app.phone.list(params);
  app.premium = { priceSatPerMin, name };
  setState("premium-status", "listed", `listed at ${fmtSat(priceSatPerMin)}/min: paid calls are answered here`);
  $("premium-stop").disabled = false;
}

document.getElementById("premium-form").addEventListener(
  "submit",
  guard(async () => {
    if (!app.phone.account) throw new PaysipError("going premium needs an account: sign in with one", "needs_account");
    if (!app.walletReady) throw new PaysipError("going premium needs your wallet: open the Wallet page first (create, restore or unlock it)", "wallet_not_ready");
    const priceSatPerMin = Number($("premium-price").value);
    if (!Number.isSafeInteger(priceSatPerMin) || priceSatPerMin <= 0) throw new PaysipError("the price must be a positive whole number of sat/min", "bad_input");
    await goPremium({ priceSatPerMin, name: $("premium-name").value.trim() });
  }),
);
on(
  "premium-stop",
  "click",
  guard(async () => {
    app.premium = null;
    await app.phone.unlist();
    setState("premium-status", "off", "not listed");
    $("premium-stop").disabled = true;
  }),
);

// ---- channels ----------------------------------------------------------

const explorer = { mainnet: "https://mempool.space/tx/", testnet3: "https://mempool.space/testnet/tx/", signet: "https://mempool.space/signet/tx/" };

function txCell(txid) {
  const td = document.createElement("td");
  if (!txid) return td;
  const base = explorer[cfg.network];
  const el = document.createElement(base ? "a" : "code");
  el.textContent = txid;
  el.title = txid;
  if (base) {
    el.href = base + txid;
    el.rel = "noreferrer noopener";
    el.target = "_blank";
  }
  td.appendChild(el);
  return td;
}

async function refreshChannels() {
  if (!app.walletReady) return;
  const rows = await call(app.paysip.channels());
  const tbody = $("channels-table");
  tbody.replaceChildren();
  for (const c of rows || []) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "channel-row";
    tr.dataset.channelId = c.channelId;
    tr.dataset.state = c.state;
    tr.dataset.paidSat = String(c.paidSat);
    tr.dataset.role = c.role || "";
    tr.dataset.fundingTxid = c.fundingTxid || "";
    tr.dataset.closeTxid = c.closeTxid || "";
    for (const text of [c.channelId, c.role, c.peer || "", c.state, fmtSat(c.capacitySat), fmtSat(c.paidSat)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.appendChild(txCell(c.fundingTxid));
    tr.appendChild(txCell(c.closeTxid));
    tbody.appendChild(tr);
  }
}
on("channels-refresh", "click", guard(refreshChannels));

// ---- start -------------------------------------------------------------

figure("network", cfg.network || "?", { network: cfg.network || "" });
view = new CallView();
show("signin");
globalThis.paysipApp = app; // for the e2e tests' inspection
