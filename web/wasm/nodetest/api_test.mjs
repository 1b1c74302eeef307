// The JS API of paysip.wasm under Node (go test ./web/wasm runs it): two
// wasm instances, a payer and a payee, each with its own IndexedDB
// database (fake-indexeddb: Node has none; the real browser test is
// web/e2e's), pay each other over a conn pair; the chain is a real regtest
// node behind sipserver's SIP API, reached through CHAIN_URL (the Go test
// forwards each request as a SIP MESSAGE to sip:bitcoin@). It prints one
// JSON line of results for the Go test to check on chain.
import "fake-indexeddb/auto";
import { createRequire } from "node:module";
import { readFile } from "node:fs/promises";

const require = createRequire(import.meta.url);
require(process.env.WASM_EXEC); // defines globalThis.Go
const wasm = await readFile(process.env.WASM);
const module = await WebAssembly.compile(wasm);

// start runs one instance and returns its paysip object.
async function start() {
  const ready = new Promise((resolve) => { globalThis.paysipReady = resolve; });
  const go = new Go();
  const instance = await WebAssembly.instantiate(module, go.importObject);
  go.run(instance);
  await ready;
  const p = globalThis.paysip;
  delete globalThis.paysip;
  return p;
}

async function chainRequest(body) {
  const res = await fetch(process.env.CHAIN_URL, { method: "POST", body });
  if (res.status !== 200) throw new Error(`no answer from sip:bitcoin@: ${res.status}`);
  return await res.text();
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function rejects(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof Error && e.code === code && e.message.length > 0, `${what}: code ${e.code} (${e.message}), want ${code}`);
    return;
  }
  throw new Error(`${what}: resolved, want rejection ${code}`);
}

const out = {};
const payer = await start();
const payee = await start();
check(payer.version === "paysip-wasm/1", "version");
await rejects(payer.wallet.exists(), "bad_request", "before init");
for (const [p, db] of [[payer, "payer"], [payee, "payee"]]) {
  await p.init({ network: "regtest", domain: "paysip.test", chainRequest, dbName: db, debug: !!process.env.PAYSIP_DEBUG });
}
check((await payer.wallet.exists()) === false, "no wallet yet");
await rejects(payer.wallet.balance(), "no_wallet", "balance without a wallet");
const { mnemonic } = await payer.wallet.create("correct horse");
check(mnemonic.split(" ").length === 24, "24 words");
await rejects(payer.wallet.create(""), "wallet_exists", "create over a wallet");
await rejects(payer.wallet.mnemonic("wrong"), "bad_passphrase", "mnemonic with a wrong passphrase");
check((await payer.wallet.mnemonic("correct horse")) === mnemonic, "mnemonic backup");
await payee.wallet.create("");
await rejects(payer.wallet.send("bc1qnotregtest", 1000), "bad_address", "send to a mainnet-looking address");
await rejects(payer.wallet.send(await payee.wallet.receiveAddress(), 1.5), "bad_request", "fractional satoshis");
await rejects(payer.wallet.faucet(2e9), "bad_request", "faucet above its cap");

// Fund the payer through the SIP API's faucet (confirmed by a block).
const { txid: fundTxid } = await payer.wallet.faucet(1_000_000);
out.faucetTxid = fundTxid;
const bal = await payer.wallet.balance();
check(bal.confirmedSat === 1_000_000 && bal.spendableSat > 990_000, "balance " + JSON.stringify(bal));

// A conn pair: each side's sendFn delivers to the other's receive, a
// turn of the event loop later (as a network would).
let a, b;
a = payer.conn((m) => setTimeout(() => b.receive(m), 0));
b = payee.conn((m) => setTimeout(() => a.receive(m), 0));
check(typeof a.receive === "function" && typeof a.close === "function", "conn object");
const bad = payer.conn("not a function");
check(bad.__paysipError instanceof Error && bad.__paysipError.code === "bad_request", "conn(non-function) returns __paysipError bad_request");

await rejects(payee.serve({ conn: b, peer: "sip:alice@paysip.test" }), "not_payee", "serve before payee()");
const { contactParams } = await payee.payee({ priceSatPerMin: 60000, aor: "sip:tutor@paysip.test", name: "Tutor" });
check(contactParams[0][0] === "+paysip.aor" && contactParams[1][1] === "60000", "contactParams " + JSON.stringify(contactParams));

const payments = [];
const served = payee.serve({ conn: b, peer: "sip:alice@paysip.test", onPayment: (p) => payments.push(p) });
const ticks = [];
let opened = null;
const result = await payer.pay({
  conn: a, peer: "sip:tutor@paysip.test", priceSatPerMin: 60000, seconds: 4, close: true,
  onOpen: (info) => { opened = info; }, onTick: (t) => ticks.push(t),
});
const serveResult = await served;
check(opened && opened.channelId === result.channelId, "onOpen");
check(result.paidSat > 0 && result.payments === ticks.length && ticks.length >= 4, "pay result " + JSON.stringify(result));
check(ticks[ticks.length - 1].paidSat === result.paidSat && ticks[0].capacitySat === result.capacitySat, "ticks " + JSON.stringify(ticks));
check(serveResult.paidSat === result.paidSat && serveResult.settlementTxid === result.closed.settlementTxid, "serve result " + JSON.stringify(serveResult));
check(payments.length === result.payments && payments[payments.length - 1].paidSat === result.paidSat && payments[0].capacitySat === result.capacitySat, "onPayment " + JSON.stringify(payments));
a.close("done");
b.close("done");

// What the payee stored: the channel, its best payment, its settlement.
const pc = (await payee.channels()).find((c) => c.channelId === result.channelId);
check(pc && pc.role === "payee" && pc.paidSat === result.paidSat && pc.closeTxid === serveResult.settlementTxid && pc.state !== "open", "payee channel " + JSON.stringify(pc));
const rc = (await payer.channels()).find((c) => c.channelId === result.channelId);
check(rc && rc.role === "payer" && rc.paidSat === result.paidSat, "payer channel " + JSON.stringify(rc));

// Hanging up: an AbortSignal ends a call of no set length; with close
// the payee settles what it was paid. A budget keeps the pool small (a
// pool above 1,000,000 sat waits for a confirmation). (A faucet payment first mines a
// block: the payee takes a funding at once only when its parents, here
// the first funding's change, are confirmed.)
await payer.wallet.faucet(10_000);
{
  let x, y;
  x = payer.conn((m) => setTimeout(() => y.receive(m), 0));
  y = payee.conn((m) => setTimeout(() => x.receive(m), 0));
  const hang = new AbortController();
  const served3 = payee.serve({ conn: y, peer: "sip:alice@paysip.test" });
  const call = payer.pay({ conn: x, peer: "sip:tutor@paysip.test", priceSatPerMin: 60000, close: true, signal: hang.signal,
    budgetSat: 20000,
    onTick: (t) => { if (t.paidSat >= 2000) hang.abort(); } });
  const r3 = await call;
  const s3 = await served3;
  check(r3.end === "hang-up" && r3.paidSat >= 2000 && r3.closed && r3.closed.settlementTxid === s3.settlementTxid && s3.paidSat === r3.paidSat,
    "hang-up " + JSON.stringify(r3) + " " + JSON.stringify(s3));
  x.close(); y.close();
  out.hangupSettlementTxid = s3.settlementTxid;
}

// A payee asking more than the caller allows: refused before funding.
let c1, c2;
c1 = payer.conn((m) => setTimeout(() => c2.receive(m), 0));
c2 = payee.conn((m) => setTimeout(() => c1.receive(m), 0));
const served2 = payee.serve({ conn: c2, peer: "sip:alice@paysip.test" }).catch((e) => e);
await rejects(payer.pay({ conn: c1, peer: "sip:tutor@paysip.test", priceSatPerMin: 30000, seconds: 3 }), "price_above_limit", "price above the limit");
c1.close(); c2.close();
await served2;
await rejects(payer.pay({ conn: c1, peer: "sip:tutor@paysip.test", seconds: 3 }), "bad_request", "pay on a closed conn / without a price");

// A reload: a new instance on the payee's database finds its wallet and
// channels; settleOpen has nothing left to settle.
const reloaded = await start();
await reloaded.init({ network: "regtest", domain: "paysip.test", chainRequest, dbName: "payee" });
check((await reloaded.wallet.exists()) === true, "wallet survives a reload");
await rejects(reloaded.wallet.balance(), "locked", "locked after a reload");
await reloaded.wallet.unlock("");
const again = (await reloaded.channels()).find((c) => c.channelId === result.channelId);
check(again && again.paidSat === result.paidSat, "channel survives a reload");
out.settleOpen = await reloaded.settleOpen();
out.watchRefunds = await payer.watchRefunds();

out.channelId = result.channelId;
out.capacitySat = result.capacitySat;
out.paidSat = result.paidSat;
out.settlementTxid = serveResult.settlementTxid;
out.payments = result.payments;
console.log("RESULT " + JSON.stringify(out));
process.exit(0);
