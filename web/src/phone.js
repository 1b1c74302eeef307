// phone.js: the page's SIP user agent (SIP.js over the server's WebSocket):
// sign-in (REGISTER) or anonymous use, the SIP API to Bitcoin (MESSAGE to
// sip:bitcoin@DOMAIN, Contract B), the live directory (SUBSCRIBE
// Event: paysip-directory), the priced listing (a second REGISTER at
// sip:directory@DOMAIN with the +paysip.* Contact parameters), calls.
import { Inviter, Messager, Registerer, RegistererState, Subscriber, SubscriptionState, UserAgent } from "sip.js";
import { PaysipError } from "./errors.js";

export const API_CONTENT_TYPE = "application/vnd.paysip+json";
export const DIRECTORY_EVENT = "paysip-directory";
export const DATA_CHANNEL = { label: "paysip", protocol: "paysip/1" };

// Reason header of a payee's BYE when the payer fell behind
// (sipext.PaymentLateReason).
export const PAYMENT_LATE_REASON = 'SIP;cause=402;text="payment late"';

function wsURL(cfg) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${cfg.wsPath || "/sip"}`;
}

// A SIP status as a PaysipError with a code the page explains.
export function statusError(response, what) {
  const m = response.message;
  const code = m.statusCode;
  const err = new PaysipError(`${what}: ${code} ${m.reasonPhrase}`, `sip_${code}`);
  err.status = code;
  err.reasonPhrase = m.reasonPhrase;
  err.headers = { terms: m.getHeader("Paysip-Terms") || "", retryAfter: m.getHeader("Retry-After") || "" };
  err.body = m.body || "";
  return err;
}

export class Phone {
  // account: {user, password} or null (anonymous).
  constructor(cfg, account, handlers = {}) {
    this.cfg = cfg;
    this.account = account;
    this.handlers = handlers;
    this.aor = account ? `sip:${account.user}@${cfg.domain}` : "sip:anonymous@anonymous.invalid";
    this.registerer = null;
    this.listing = null;
    this.subscriber = null;
  }

  uri(s) {
    const u = UserAgent.makeURI(s);
    if (!u) throw new PaysipError(`not a SIP address: ${s}`, "bad_address");
    return u;
  }

  // target reads what the user typed: "tutor", "tutor@host" or a sip: URI.
  target(s) {
    s = s.trim();
    if (!s.startsWith("sip:") && !s.startsWith("sips:")) s = "sip:" + (s.includes("@") ? s : `${s}@${this.cfg.domain}`);
    return this.uri(s);
  }

  async start() {
    const opts = {
      uri: this.uri(this.aor),
      transportOptions: { server: wsURL(this.cfg), connectionTimeout: 8 },
      logLevel: "error",
      userAgentString: "paysip-web",
      displayName: this.account ? this.account.user : "",
      sessionDescriptionHandlerFactoryOptions: {
        peerConnectionConfiguration: { iceServers: this.cfg.iceServers || [] },
        iceGatheringTimeout: 5000,
      },
      delegate: {
        onInvite: (inv) => this.handlers.onInvite && this.handlers.onInvite(inv),
        onDisconnect: (err) => this.handlers.onDisconnect && this.handlers.onDisconnect(err),
        onConnect: () => this.handlers.onConnect && this.handlers.onConnect(),
        onMessage: (m) => m.accept(),
      },
    };
    if (this.account) {
      opts.authorizationUsername = this.account.user;
      opts.authorizationPassword = this.account.password;
    }
    this.ua = new UserAgent(opts);
    try {
      await this.ua.start();
    } catch (e) {
      throw new PaysipError(`cannot reach the server's WebSocket ${wsURL(this.cfg)}: ${e.message || e}`, "server_unreachable");
    }
    if (this.account) {
      this.registerer = new Registerer(this.ua, { expires: 300 });
      await this.register(this.registerer, "signing in");
    }
  }

  // register sends a REGISTER and waits for its final answer.
  register(registerer, what) {
    return new Promise((resolve, reject) => {
      registerer
        .register({
          requestDelegate: {
            onAccept: () => resolve(),
            onReject: (res) => {
              const err = statusError(res, what);
              if (err.status === 401 || err.status === 407 || err.status === 403) {
                err.code = "bad_credentials";
                err.message = `${what}: the server refused the account (${err.status} ${err.reasonPhrase}): check the user name and password`;
              }
              reject(err);
            },
          },
        })
        .catch((e) => reject(new PaysipError(`${what}: ${e.message || e}`, "server_unreachable")));
    });
  }

  get connected() {
    return this.ua && this.ua.isConnected();
  }

  // chainRequest is Contract A's: one SIP API request (JSON text) as a
  // MESSAGE to sip:bitcoin@DOMAIN; the 200's body, or an Error with the
  // API's code (node_unreachable when the server or its node does not
  // answer).
  chainRequest(json) {
    const to = this.uri(`sip:bitcoin@${this.cfg.domain}`);
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new PaysipError("not connected to the server: the Bitcoin node cannot be reached", "node_unreachable"));
        return;
      }
      const m = new Messager(this.ua, to, json, API_CONTENT_TYPE);
      m.message({
        requestDelegate: {
          onAccept: (res) => resolve(res.message.body),
          onReject: (res) => {
            // An error answer's body says why ({"type":"error","code",...}):
            // the wallet reads it (web/wasm/API.md). Without one, reject.
            if (res.message.body) {
              resolve(res.message.body);
              return;
            }
            const err = statusError(res, "SIP API to Bitcoin");
            try {
              const b = JSON.parse(err.body);
              if (b.code) err.code = b.code;
              if (b.reason) err.message = b.reason;
            } catch {
              if (err.status === 408 || err.status >= 500) err.code = "node_unreachable";
            }
            if (err.code === "unavailable") err.code = "node_unreachable";
            reject(err);
          },
        },
      }).catch((e) => reject(new PaysipError(`SIP API to Bitcoin: ${e.message || e}`, "node_unreachable")));
    });
  }

  // chain is chainRequest with objects.
  async chain(req) {
    return JSON.parse(await this.chainRequest(JSON.stringify({ v: 1, ...req })));
  }

  // followDirectory subscribes to the live directory; onDoc gets every
  // document (the whole directory), onState the subscription's state.
  followDirectory(onDoc, onState) {
    this.follow = { onDoc, onState };
    const sub = new Subscriber(this.ua, this.uri(`sip:directory@${this.cfg.domain}`), DIRECTORY_EVENT, {
      expires: 600,
      extraHeaders: ["Accept: application/json"],
    });
    sub.delegate = {
      onNotify: (n) => {
        n.accept();
        try {
          onDoc(JSON.parse(n.request.body || "{}"));
        } catch (e) {
          onState && onState("bad", `the directory sent something unreadable: ${e.message}`);
        }
      },
    };
    sub.stateChange.addListener((st) => {
      onState && onState(st === SubscriptionState.Subscribed ? "live" : st === SubscriptionState.Terminated ? "ended" : "pending");
      if (st === SubscriptionState.Terminated && this.subscriber === sub && this.connected) {
        // Ended by the server (expired, refused, a lost NOTIFY): again.
        setTimeout(() => this.subscriber === sub && this.followDirectory(onDoc, onState), 3000);
      }
    });
    this.subscriber = sub;
    sub.subscribe().catch((e) => onState && onState("ended", e.message));
    return sub;
  }

  // refollow subscribes again (after a reconnection: the old
  // subscription's NOTIFYs went to the lost connection).
  refollow() {
    const old = this.subscriber;
    this.subscriber = null;
    if (old) old.dispose().catch(() => {});
    if (this.follow) this.followDirectory(this.follow.onDoc, this.follow.onState);
  }

  // list puts this account in the directory with the payee's Contact
  // parameters (docs/protocol.md: +paysip.aor, +paysip.price, ...).
  async list(contactParams) {
    if (!this.account) throw new PaysipError("going premium needs an account: sign in", "needs_account");
    await this.unlist();
    const reg = new Registerer(this.ua, {
      expires: 300,
      params: { toUri: this.uri(`sip:directory@${this.cfg.domain}`) },
      extraContactHeaderParams: contactParams.map(([k, v]) => `${k}=${v}`),
    });
    await this.register(reg, "listing in the directory");
    this.listing = reg;
  }

  async unlist() {
    const reg = this.listing;
    this.listing = null;
    if (reg && reg.state === RegistererState.Registered) {
      await reg.unregister().catch(() => {});
    }
    if (reg) reg.dispose().catch(() => {});
  }

  // invite makes an Inviter for a call: audio, and when paid the paysip
  // DataChannel (label paysip, protocol paysip/1, ordered) and
  // "Supported: paysip".
  inviter(target, { paid, onDataChannel }) {
    return new Inviter(this.ua, target, {
      extraHeaders: paid ? ["Supported: paysip"] : [],
      sessionDescriptionHandlerOptions: {
        constraints: { audio: true, video: false },
        dataChannel: paid,
        dataChannelLabel: DATA_CHANNEL.label,
        dataChannelOptions: { ordered: true, protocol: DATA_CHANNEL.protocol },
        onDataChannel,
      },
    });
  }

  async stop() {
    if (this.subscriber) {
      const s = this.subscriber;
      this.subscriber = null;
      await s.unsubscribe().catch(() => {});
    }
    await this.unlist();
    if (this.registerer) await this.registerer.unregister().catch(() => {});
    if (this.ua) await this.ua.stop().catch(() => {});
  }
}
