// build.mjs builds the web app into dist/ (or --out DIR): the page's
// bundle from src/ with esbuild, the WebAssembly build of ./web/wasm
// (Contract A: GOOS=js GOARCH=wasm, -trimpath -ldflags="-s -w"), Go's
// wasm_exec.js, and a gzip and brotli copy of each text file and of the
// wasm. Everything is deterministic: the same sources, Go and node give the
// same bytes (web.go's TestBundleMatchesSources checks it).
//
//   node build.mjs              # everything, into dist/
//   node build.mjs --out DIR    # into DIR (the test's rebuild)
//   node build.mjs --no-wasm    # the page only (keeps dist/'s wasm)
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIdx = args.indexOf("--out");
const out = path.resolve(outIdx >= 0 ? args[outIdx + 1] : path.join(here, "dist"));
const withWasm = !args.includes("--no-wasm");

// Files kept only compressed (the handler decompresses gzip for the rare
// client that takes neither): the wasm is megabytes.
const compressedOnly = new Set(["paysip.wasm"]);

function gzip(buf) {
  // zlib's gzip header has no name and mtime 0: deterministic.
  return zlib.gzipSync(buf, { level: 9 });
}

function brotli(buf, text) {
  return zlib.brotliCompressSync(buf, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_MODE]: text ? zlib.constants.BROTLI_MODE_TEXT : zlib.constants.BROTLI_MODE_GENERIC,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: buf.length,
    },
  });
}

function put(name, buf) {
  const text = !name.endsWith(".wasm");
  if (!compressedOnly.has(name)) fs.writeFileSync(path.join(out, name), buf);
  fs.writeFileSync(path.join(out, name + ".gz"), gzip(buf));
  fs.writeFileSync(path.join(out, name + ".br"), brotli(buf, text));
  return buf.length;
}

async function page() {
  const res = await build({
    entryPoints: [path.join(here, "src/main.js")],
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome110", "firefox115", "safari16"],
    legalComments: "eof",
    write: false,
    outfile: "app.js",
    logLevel: "warning",
    // No source paths of this machine in the output.
    absWorkingDir: here,
    sourcemap: false,
  });
  const js = Buffer.from(res.outputFiles[0].contents);
  const css = fs.readFileSync(path.join(here, "src/app.css"));
  // index.html names its assets with a content hash so a new build is
  // never mixed with a cached old one.
  const tag = (b) => createHash("sha256").update(b).digest("hex").slice(0, 12);
  let html = fs.readFileSync(path.join(here, "src/index.html"), "utf8");
  html = html.replaceAll("app.js?v=", "app.js?v=" + tag(js)).replaceAll("app.css?v=", "app.css?v=" + tag(css));
  return { js, css, html: Buffer.from(html) };
}

function wasm() {
  const repo = path.resolve(here, "..");
  // Contract A's main package; until it exists the page is built alone
  // (and says the wallet is unavailable).
  let name = "";
  try {
    name = execFileSync("go", ["list", "-f", "{{.Name}}", "./web/wasm"], {
      cwd: repo,
      env: { ...process.env, GOOS: "js", GOARCH: "wasm" },
      stdio: ["ignore", "pipe", "ignore"],
    }).toString().trim();
  } catch {
    name = "";
  }
  if (name !== "main") {
    console.warn("build.mjs: ./web/wasm is not a main package yet: no paysip.wasm");
    return null;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "paysip-wasm-"));
  try {
    const bin = path.join(tmp, "paysip.wasm");
    execFileSync("go", ["build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./web/wasm"], {
      cwd: repo,
      env: { ...process.env, GOOS: "js", GOARCH: "wasm", CGO_ENABLED: "0" },
      stdio: ["ignore", "inherit", "inherit"],
    });
    const goroot = execFileSync("go", ["env", "GOROOT"], { cwd: repo }).toString().trim();
    return { wasm: fs.readFileSync(bin), exec: fs.readFileSync(path.join(goroot, "lib/wasm/wasm_exec.js")) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (withWasm) fs.rmSync(out, { recursive: true, force: true }); // nothing stale
fs.mkdirSync(out, { recursive: true });
const { js, css, html } = await page();
const sizes = { "app.js": put("app.js", js), "app.css": put("app.css", css), "index.html": put("index.html", html) };
const w = withWasm ? wasm() : null;
if (w) {
  sizes["wasm_exec.js"] = put("wasm_exec.js", w.exec);
  sizes["paysip.wasm"] = put("paysip.wasm", w.wasm);
}
for (const [name, n] of Object.entries(sizes)) {
  const gz = fs.statSync(path.join(out, name + ".gz")).size;
  const br = fs.statSync(path.join(out, name + ".br")).size;
  console.log(`${name.padEnd(14)} ${String(n).padStart(9)} B  gzip ${String(gz).padStart(9)} B  brotli ${String(br).padStart(9)} B`);
}
