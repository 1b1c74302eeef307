// terms.js: the Paysip-Terms header of a 402 answer (sipext.ParseTerms,
// docs/protocol.md "402 Payment Required"), read with the same rules:
// unknown parameters ignored, repeated ones refused, a positive version
// and price required, at most 1024 bytes.
const MAX_SAT = 21_000_000 * 100_000_000;

export function parseTerms(v) {
  if (!v) throw new Error("no Paysip-Terms header");
  if (v.length > 1024) throw new Error(`Paysip-Terms of ${v.length} bytes`);
  const t = { version: 0, priceSatPerMin: 0, minDepositSat: 0, payeeKey: "", transports: [] };
  const seen = new Set();
  const positive = (s) => {
    if (!/^[0-9]{1,16}$/.test(s)) return NaN;
    const n = Number(s);
    return n > 0 && n <= MAX_SAT ? n : NaN;
  };
  for (const part of v.split(";")) {
    const i = part.indexOf("=");
    const name = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase();
    const value = i < 0 ? "" : part.slice(i + 1).trim();
    if (!name) continue;
    if (seen.has(name)) throw new Error(`Paysip-Terms: ${name} twice`);
    seen.add(name);
    let n = 0;
    switch (name) {
      case "version":
        n = t.version = /^[0-9]{1,4}$/.test(value) ? Number(value) : NaN;
        break;
      case "price-sat-per-min":
        n = t.priceSatPerMin = positive(value);
        break;
      case "min-deposit-sat":
        n = t.minDepositSat = positive(value);
        break;
      case "payee-key":
        t.payeeKey = value;
        break;
      case "transports":
        t.transports = value.split(",").map((s) => s.trim()).filter(Boolean);
        break;
    }
    if (Number.isNaN(n)) throw new Error(`Paysip-Terms: ${name}=${JSON.stringify(value)}`);
  }
  if (!(t.version > 0) || !(t.priceSatPerMin > 0)) throw new Error(`Paysip-Terms ${JSON.stringify(v)} has no version or price`);
  return t;
}
