// driver.mjs: Playwright (playwright-core) driving Debian's Chromium for
// paysip's end-to-end tests. web/e2e_test.go starts it with node and tells
// the story; this script is its hands and eyes in the browser.
//
// Protocol: one JSON object a line. Requests on stdin,
//   {"id": 1, "op": "click", "page": "alice", "sel": "[data-testid=call-start]"}
// answers on stdout,
//   {"id": 1, "ok": true, "result": ...}   or   {"id": 1, "ok": false, "error": "..."}
// Every page records each HTTP request it makes (Playwright's request
// event: documents, scripts, fetches, WebSocket handshakes...) and its
// console and errors, for the tests to check.
//
// Environment: PAYSIP_CHROMIUM (the browser's path: Debian's
// /usr/bin/chromium; Playwright never downloads one here), PAYSIP_BASE_URL
// (the app's origin), PAYSIP_CHROMIUM_ARGS (JSON array of extra flags).
import { chromium } from "playwright-core";
import readline from "node:readline";

const base = process.env.PAYSIP_BASE_URL;
const executablePath = process.env.PAYSIP_CHROMIUM || "/usr/bin/chromium";
const args = JSON.parse(process.env.PAYSIP_CHROMIUM_ARGS || "[]");

const browser = await chromium.launch({ executablePath, args, headless: true });
const pages = new Map(); // name -> {context, page, requests, logs}

function get(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

function watch(rec, page) {
  page.on("request", (r) => rec.requests.push({ url: r.url(), method: r.method(), type: r.resourceType() }));
  page.on("websocket", (ws) => rec.requests.push({ url: ws.url(), method: "GET", type: "websocket" }));
  page.on("console", (m) => rec.logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => rec.logs.push(`pageerror: ${e.stack || e}`));
  page.on("crash", () => rec.logs.push("crash: the page crashed"));
}

const ops = {
  // A new browser context (its own IndexedDB: another person) with one page.
  async open({ page: name }) {
    const context = await browser.newContext({ baseURL: base, permissions: ["microphone"], viewport: { width: 1100, height: 800 } });
    const page = await context.newPage();
    const rec = { context, page, requests: [], logs: [] };
    watch(rec, page);
    pages.set(name, rec);
    return null;
  },
  async goto({ page, path }) {
    await get(page).page.goto(path || "/", { waitUntil: "load" });
    return null;
  },
  async reload({ page }) {
    await get(page).page.reload({ waitUntil: "load" });
    return null;
  },
  async click({ page, sel, timeout }) {
    await get(page).page.locator(sel).first().click({ timeout: timeout ?? 15000 });
    return null;
  },
  async fill({ page, sel, value, timeout }) {
    await get(page).page.locator(sel).first().fill(String(value), { timeout: timeout ?? 15000 });
    return null;
  },
  // Waits until sel is visible (state: visible|attached|hidden|detached).
  async wait({ page, sel, state, timeout }) {
    await get(page).page.locator(sel).first().waitFor({ state: state || "visible", timeout: timeout ?? 15000 });
    return null;
  },
  // Waits until a JavaScript expression over the document is true; the
  // expression sees `arg`.
  async until({ page, expr, arg, timeout }) {
    const fn = new Function("arg", `return (${expr});`);
    await get(page).page.waitForFunction(fn, arg ?? null, { timeout: timeout ?? 15000, polling: 100 });
    return null;
  },
  // The data-* attributes, text and visibility of every element matching sel.
  async query({ page, sel }) {
    return get(page).page.locator(sel).evaluateAll((els) =>
      els.map((el) => ({ data: { ...el.dataset }, text: (el.innerText ?? el.textContent ?? "").trim(), value: el.value ?? null })),
    );
  },
  async screenshot({ page, path }) {
    await get(page).page.screenshot({ path, fullPage: true });
    return null;
  },
  async requests({ page }) {
    return get(page).requests;
  },
  async logs({ page }) {
    return get(page).logs;
  },
  async close({ page }) {
    const p = get(page);
    await p.context.close();
    pages.delete(page);
    return null;
  },
};

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
out({ id: 0, ok: true, result: { version: browser.version() } });

const rl = readline.createInterface({ input: process.stdin });
const running = new Set();
rl.on("line", (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    out({ id: -1, ok: false, error: `bad request: ${e}` });
    return;
  }
  // Requests run as they come: the test may wait on two pages at once.
  const op = ops[req.op];
  if (!op) return out({ id: req.id, ok: false, error: `unknown op ${req.op}` });
  const p = (async () => {
    try {
      out({ id: req.id, ok: true, result: await op(req) });
    } catch (e) {
      // Playwright's messages carry terminal colours: plain text for go test.
      out({ id: req.id, ok: false, error: String(e && e.message ? e.message : e).replace(/\x1b\[[0-9;]*m/g, "") });
    }
  })();
  running.add(p);
  p.finally(() => running.delete(p));
});
rl.on("close", async () => {
  await Promise.allSettled([...running]);
  await browser.close();
  process.exit(0);
});
