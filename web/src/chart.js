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
    const pad = { l: 70, r: 12, t: 12, b: 24 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const last = this.points[this.points.length - 1];
    const tMax = Math.max(10, last ? last.t : 0);
    const yMax = Math.max(1, this.capacity, last ? last.paid : 0);
    g.strokeStyle = "#ccc";
    g.fillStyle = "#555";
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ph - (ph * i) / 4;
      g.beginPath();
      g.moveTo(pad.l, y);
      g.lineTo(pad.l + pw, y);
      g.stroke();
      g.fillText(Math.round((yMax * i) / 4).toLocaleString("en-US"), 4, y + 4);
    }
    g.fillText(`${Math.round(tMax)} s`, pad.l + pw - 30, h - 6);
    g.fillText("0 s", pad.l, h - 6);
    const x = (t) => pad.l + (pw * t) / tMax;
    const y = (v) => pad.t + ph - (ph * v) / yMax;
    const line = (color, val) => {
      if (!this.points.length) return;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      g.moveTo(x(0), y(val({ t: 0, paid: 0 })));
      for (const p of this.points) g.lineTo(x(p.t), y(val(p)));
      g.stroke();
    };
    line("#c0392b", (p) => Math.max(0, this.capacity - p.paid));
    line("#1e8449", (p) => p.paid);
  }
}
