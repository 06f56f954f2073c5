// Live plots in the widget: drawn on a canvas from the points the kernel sends (LivePlot.render_data), or a PNG
// the kernel rendered.

const PLOT_W = 640;
const PLOT_H = 180;
const PLOT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const FLAG_COLORS = ["rgba(44,160,44,0.25)", "rgba(255,127,14,0.25)", "rgba(148,103,189,0.25)"];

function floats(buf) {
  if (!buf) return new Float32Array(0);
  if (buf instanceof ArrayBuffer) return new Float32Array(buf.slice(0));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));  // aligned copy
}

// About `count` round tick values (1, 2 or 5 times a power of ten) from lo to hi.
export function niceTicks(lo, hi, count = 4) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

// Draws one plot-data message on `canvas`: lines over the last window_s seconds, flags as shaded spans, the
// legend in a strip above the axes (never over the trace).
export function drawPlot(canvas, msg, buffers) {
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  if (canvas.width !== PLOT_W * dpr) { canvas.width = PLOT_W * dpr; canvas.height = PLOT_H * dpr; }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const names = msg.series || [], flagNames = msg.flags || [], win = +msg.window_s || 10;
  const series = names.map((_, i) => floats(buffers[i]));
  const spans = flagNames.map((_, i) => floats(buffers[names.length + i]));
  const L = 46, R = 8, T = 22, B = 24, w = PLOT_W - L - R, hgt = PLOT_H - T - B;
  let lo = Infinity, hi = -Infinity;
  if (msg.ylim) [lo, hi] = msg.ylim;
  else for (const xy of series) for (let i = 1; i < xy.length; i += 2) { lo = Math.min(lo, xy[i]); hi = Math.max(hi, xy[i]); }
  if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; } else if (!msg.ylim) { const pad = (hi - lo) * 0.08; lo -= pad; hi += pad; }
  const X = (t) => L + (t + win) / win * w, Y = (v) => T + (hi - v) / (hi - lo) * hgt;
  g.clearRect(0, 0, PLOT_W, PLOT_H);
  g.fillStyle = "#fff"; g.fillRect(0, 0, PLOT_W, PLOT_H);
  g.font = "11px sans-serif"; g.textBaseline = "middle";
  spans.forEach((se, k) => {
    g.fillStyle = FLAG_COLORS[k % FLAG_COLORS.length];
    for (let i = 0; i + 1 < se.length; i += 2) {
      const x0 = Math.max(X(se[i]), L), x1 = Math.min(X(se[i + 1]), L + w);
      if (x1 > x0) g.fillRect(x0, T, x1 - x0, hgt);
    }
  });
  g.strokeStyle = "rgba(0,0,0,0.12)"; g.fillStyle = "#444"; g.lineWidth = 1;
  g.textAlign = "right";
  for (const v of niceTicks(lo, hi, 5)) {
    const y = Math.round(Y(v)) + 0.5;
    g.beginPath(); g.moveTo(L, y); g.lineTo(L + w, y); g.stroke();
    g.fillText(String(+v.toPrecision(4)), L - 4, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of niceTicks(-win, 0, 5)) {
    const x = Math.round(X(t)) + 0.5;
    g.beginPath(); g.moveTo(x, T); g.lineTo(x, T + hgt); g.stroke();
    g.fillText(String(+(-t).toPrecision(3)), x, T + hgt + 3);
  }
  g.textAlign = "right"; g.fillText("seconds ago", L + w, T + hgt + 13 > PLOT_H - 11 ? PLOT_H - 11 : T + hgt + 13);
  g.save();
  g.beginPath(); g.rect(L, T, w, hgt); g.clip();
  g.lineWidth = 1.4;
  series.forEach((xy, k) => {
    g.strokeStyle = PLOT_COLORS[k % PLOT_COLORS.length];
    g.beginPath();
    for (let i = 0; i + 1 < xy.length; i += 2) (i ? g.lineTo : g.moveTo).call(g, X(xy[i]), Y(xy[i + 1]));
    g.stroke();
  });
  g.restore();
  g.strokeStyle = "rgba(0,0,0,0.35)"; g.strokeRect(L + 0.5, T + 0.5, w - 1, hgt - 1);
  // legend strip (and title) above the axes
  g.textBaseline = "middle"; g.textAlign = "left";
  let x = L;
  if (msg.title) { g.fillStyle = "#222"; g.font = "600 11px sans-serif"; g.fillText(msg.title, x, 10); x += g.measureText(msg.title).width + 14; g.font = "11px sans-serif"; }
  const item = (swatch, name) => {
    swatch(x); x += 18; g.fillStyle = "#333"; g.fillText(name, x, 10); x += g.measureText(name).width + 12;
  };
  names.forEach((n, k) => item((x0) => { g.fillStyle = PLOT_COLORS[k % PLOT_COLORS.length]; g.fillRect(x0, 9, 14, 2.5); }, n));
  flagNames.forEach((n, k) => item((x0) => { g.fillStyle = FLAG_COLORS[k % FLAG_COLORS.length]; g.fillRect(x0, 4, 14, 12); }, n));
  const last = series.length && series[0].length >= 2 ? series[0][series[0].length - 1] : null;
  canvas.dataset.frames = String((+canvas.dataset.frames || 0) + 1);
  canvas.dataset.points = String(series.reduce((n, xy) => n + xy.length / 2, 0));
  if (last !== null) canvas.dataset.last = String(last);
  canvas.dataset.ylo = String(lo); canvas.dataset.yhi = String(hi);
}

/** Shows one PNG frame (the kernel's `{"kind": "plot"}` message) in `img`, freeing the previous frame's URL. */
export function showPlotPng(img, png) {
  const blob = new Blob([png], { type: "image/png" });
  const url = URL.createObjectURL(blob);
  const old = img.dataset.url;
  img.src = url;
  img.dataset.url = url;
  img.dataset.frames = String((+img.dataset.frames || 0) + 1);
  img.hidden = false;
  if (old) URL.revokeObjectURL(old);
}
