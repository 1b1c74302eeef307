// wasm.js: loads the WebAssembly build of the wallet and the paid call
// (Contract A) with Go's wasm_exec.js (loaded by index.html before this
// bundle), and waits for globalThis.paysip.
import { PaysipError } from "./errors.js";

let loading = null;

export function loadPaysip() {
  if (loading) return loading;
  loading = (async () => {
    if (typeof globalThis.Go !== "function") throw new PaysipError("wasm_exec.js did not load", "wasm_missing");
    const ready = new Promise((resolve) => {
      globalThis.paysipReady = resolve;
    });
    const go = new globalThis.Go();
    let res;
    try {
      res = await WebAssembly.instantiateStreaming(fetch("paysip.wasm"), go.importObject);
    } catch (e) {
      throw new PaysipError(`the wallet (paysip.wasm) did not load: ${e.message || e}`, "wasm_missing");
    }
    go.run(res.instance).then(() => {
      loading = null;
    });
    if (!globalThis.paysip) await ready;
    return globalThis.paysip;
  })();
  return loading;
}

// call runs a paysip method and turns a rejection into a PaysipError with
// its code.
export async function call(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof PaysipError) throw e;
    throw new PaysipError(e && e.message ? e.message : String(e), (e && e.code) || "");
  }
}
