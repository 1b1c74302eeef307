// errors.js: one readable message for every failure a person can meet.
// Codes are Contract A's (the wasm's err.code), the SIP status of a call
// (sip_NNN), and the page's own.

export class PaysipError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

export const fmtSat = (n) => `${Number(n || 0).toLocaleString("en-US")} sat`;

// explain turns an error into what the person reads. ctx: {target,
// limit (sat/min), network} when known.
export function explain(err, ctx = {}) {
  const code = (err && err.code) || "";
  const msg = (err && err.message) || String(err);
  const who = ctx.target || "the payee";
  switch (code) {
    case "no_funds":
      return `Not enough funds: your wallet cannot fund this call (${msg}). Add coins on the Wallet page${ctx.network === "regtest" ? " (the regtest faucet is there)" : ""}.`;
    case "mic_refused":
      return "Microphone refused: allow this page to use the microphone (the permission icon in the address bar), then call again.";
    case "mic_missing":
      return "No microphone found: plug one in, then call again.";
    case "price_above_limit":
      return `Price above your limit: ${who} asks more than the ${fmtSat(ctx.limit)}/min you allowed (${msg}). Raise your limit to call.`;
    case "payment_refused":
      return `Payment refused by ${who}: ${msg}. Nothing more is paid; the channel's pool comes back to you at settlement or refund.`;
    case "payment_required":
      return msg;
    case "node_unreachable":
    case "unavailable":
      return `The Bitcoin node is unreachable (through the server's SIP API, sip:bitcoin@…): ${msg}. Try again in a moment.`;
    case "server_unreachable":
      return `The server is unreachable: ${msg}.`;
    case "bad_credentials":
      return msg;
    case "needs_account":
    case "wallet_not_ready":
    case "wasm_missing":
      return msg;
    case "locked":
      return "The wallet is locked: unlock it with its passphrase (Wallet page).";
    case "bad_passphrase":
      return "Wrong passphrase.";
    case "call_dropped":
      return `The call dropped: ${msg}.`;
    case "payee_unreachable":
      return msg;
    case "no_faucet":
      return `No faucet here: ${msg}.`;
    case "rate_limited":
      return `Too many requests: ${msg}. Wait a moment.`;
  }
  if (code.startsWith("sip_")) return `${who}: ${msg}.`;
  return msg;
}

// callFailure explains a SIP answer to an INVITE.
export function callFailure(err, target) {
  const s = err.status;
  if ([404, 410, 480, 408, 503, 504, 486, 600, 603].includes(s)) {
    const why = {
      404: "no such address",
      410: "gone",
      480: "not registered now (offline)",
      408: "no answer",
      503: "the server cannot reach it now",
      504: "no answer in time",
      486: "busy",
      600: "busy everywhere",
      603: "declined",
    }[s];
    return new PaysipError(`${target} is unreachable: ${why} (${s} ${err.reasonPhrase})`, "payee_unreachable");
  }
  return err;
}
