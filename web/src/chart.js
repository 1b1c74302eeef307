// chart.js: the call screen's live chart of both balances in the
// channel, drawn on a canvas: the payer's share of the pool draining, the
// payee's growing (the original write-up's "9 BTC -> Alice, 1 BTC -> Bob").
export class BalanceChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset(0);
  }

  reset(capacitySat) {
    this.capacity = capacitySat;
    this.points = []; // {t: seconds, paid: sat}
    this.draw();
  }

  add(t, paidSat, capacitySat) {
    if (capacitySat) this.capacity = capacitySat;
    this.points.push({ t, paid: paidSat });
    if (this.points.length > 4000) this.points.splice(0, this.points.length - 4000);
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = globalThis.devicePixelRatio || 1;
    const w = c.clientWidth || 600;
    const h = c.clientHeight || 220;
    if (c.width !== Math.round(w * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pad = { l: 70, r: 70, t: 24, b: 24 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const last = this.points[this.points.length - 1];
    const tMax = Math.max(10, last ? last.t : 0);
    // Two axes over the same span: the payee's share from 0 (left, green)
    // and the payer's from the pool down (right, red). What one gains the
    // other loses: the lines mirror each other, at a scale where a
    // second's payment shows even in a large pool.
    const paid = last ? last.paid : 0;
    const span = Math.max(100, Math.ceil((paid * 1.25) / 100) * 100);
    const cap = this.capacity;
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ph - (ph * i) / 4;
      g.strokeStyle = "#e3e3e3";
      g.beginPath();
      g.moveTo(pad.l, y);
      g.lineTo(pad.l + pw, y);
      g.stroke();
      g.fillStyle = "#1e8449";
      g.fillText(Math.round((span * i) / 4).toLocaleString("en-US"), 4, y + 4);
      if (cap) {
        g.fillStyle = "#c0392b";
        g.fillText(Math.round(cap - span + (span * i) / 4).toLocaleString("en-US"), pad.l + pw + 6, y + 4);
      }
    }
    g.fillStyle = "#555";
    g.fillText("0 s", pad.l, h - 6);
    g.fillText(`${Math.round(tMax)} s`, pad.l + pw - 30, h - 6);
    g.fillStyle = "#1e8449";
    g.fillText("payee (sat)", 4, 10);
    if (cap) {
      g.fillStyle = "#c0392b";
      g.fillText("payer (sat)", pad.l + pw + 6, 10);
    }
    const x = (t) => pad.l + (pw * t) / tMax;
    const y = (gain) => pad.t + ph - (ph * Math.min(gain, span)) / span;
    const line = (color) => {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      g.moveTo(x(0), y(0));
      let prev = 0;
      for (const p of this.points) {
        g.lineTo(x(p.t), y(prev)); // payments are steps
        g.lineTo(x(p.t), y(p.paid));
        prev = p.paid;
      }
      g.lineTo(x(tMax), y(prev));
      g.stroke();
    };
    if (!this.points.length) return;
    // payer: cap - paid on the right axis is the mirror of paid.
    if (cap) {
      g.setTransform(dpr, 0, 0, -dpr, 0, (pad.t * 2 + ph) * dpr);
      line("#c0392b");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
    }
    line("#1e8449");
  }
}
