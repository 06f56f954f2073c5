// remotemedia_nbrtc stream widget: browser mic/camera -> WebRTC -> pipeline in the kernel -> results.
// One ESM file, no build step. Signaling is RemoteMedia's JSON-RPC 2.0 over the server extension's
// WebSocket (<base_url>remotemedia/ws/<session_id>): peer.announce, peer.offer answered in the result,
// trickle ICE both ways, peer.state_change notifications.

import { ERROR_CODES, SERVER_PEER_ID } from "./protocol.js";
import { authHeaders, baseUrl, benchHook, detectHost, keepCandidate, pageConfig, resolveAudioTransport, signalingUrl } from "./config.js";
import { RpcSocket } from "./rpc_socket.js";
import { WsMediaLink } from "./ws_media_link.js";
import { DcAudioLink } from "./dc_audio_link.js";

const STATS_INTERVAL_MS = 1000;
const PING_INTERVAL_MS = 1000;
const MAX_TEXT_LINES = 200;
// A browser with any network gathers its host candidates within milliseconds; none this long after
// setLocalDescription means it has no network but loopback, which Chrome never offers to WebRTC.
const NO_CANDIDATE_MS = 1500;
const NO_NETWORK_REASON = "this browser offers WebRTC no network address (only loopback here: Chrome never " +
  "gathers 127.0.0.1 unless started with --allow-loopback-in-peer-connection)";

function friendlyMediaError(err, host) {
  const name = (err && err.name) || "";
  if (host === "vscode")
    return "VS Code notebooks cannot use the microphone or camera (its webviews deny getUserMedia). " +
      "Open this notebook in JupyterLab or Notebook 7 in a browser.";
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Permission denied: allow microphone/camera access for this page (the icon in the address bar), then press Start.";
  if (name === "NotFoundError" || name === "OverconstrainedError")
    return "No device found: plug in a microphone/camera or pick another device, then press Start.";
  if (name === "NotReadableError")
    return "The device is busy or unavailable (another application may hold it). Close it and press Start.";
  return "Could not open the microphone/camera: " + (err && err.message ? err.message : String(err));
}

// The kernel's outgoing audio (RTP track or data-channel audio): every sample the pipeline returned is sent,
// trimmed (a standing backlog after a stall, to keep the latency bounded) or dropped (overflow), and counted.
function kernelAudioOutSummary(k) {
  const o = k && (k.audio_out || (k.dc_audio && k.dc_audio.out));
  if (!o) return "–";
  return o.frames_sent + " frames (" + o.silent_frames + " silent, nothing to send); trimmed " + fmt(o.trimmed_ms, " ms") +
    " of backlog after stalls" + (o.dropped_samples ? ", overflow dropped " + fmt(o.dropped_ms, " ms") : "") +
    ", queued " + fmt(o.queued_ms, " ms");
}

function dcAudioSummary(d) {
  const p = d.playout;
  return "data channel, pcm16 " + d.rate + " Hz (" + d.capture + ") / back " + d.out_rate + " Hz (" + d.channel + "): sent " +
    d.frames_sent + " frames (dropped " + d.send_drops +
    "), received " + d.frames_received + " (lost " + d.lost + "); playout buffer " + fmt(p.level_ms, " ms") + ", margin " +
    fmt(p.margin_ms, " ms") + ", underruns " + p.underruns + ", skipped " + fmt(p.trimmed_ms, " ms") + " + late " + fmt(p.late_ms, " ms");
}

// ---------------------------------------------------------------------------------------------
// Stats from pc.getStats()
// ---------------------------------------------------------------------------------------------

export async function collectStats(pc) {
  const out = { local_candidates: {}, remote_candidates: {}, selected: null, rtt_ms: null,
    audio_in: null, audio_out: null, video_in: null, video_out: null };
  if (!pc) return out;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  // The selected pair: Chromium names it on the transport stats; Firefox has no transport stats but marks
  // the pair itself (non-standard `selected`); otherwise take a nominated, then any, succeeded pair.
  let pair = null, flagged = null, nominated = null, succeeded = null;
  report.forEach((s) => {
    if (s.type === "local-candidate") out.local_candidates[s.candidateType] = (out.local_candidates[s.candidateType] || 0) + 1;
    if (s.type === "remote-candidate") out.remote_candidates[s.candidateType] = (out.remote_candidates[s.candidateType] || 0) + 1;
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
    if (s.type === "candidate-pair" && s.state === "succeeded") {
      if (s.selected && !flagged) flagged = s;
      if (s.nominated && !nominated) nominated = s;
      if (!succeeded) succeeded = s;
    }
    if (s.type === "inbound-rtp" && !s.isRemote) {
      const key = s.kind === "video" ? "video_in" : "audio_in";
      out[key] = { packets: s.packetsReceived || 0, lost: s.packetsLost || 0,
        jitter_ms: s.jitter != null ? Math.round(s.jitter * 10000) / 10 : null, bytes: s.bytesReceived || 0 };
    }
    if (s.type === "outbound-rtp") {
      const key = s.kind === "video" ? "video_out" : "audio_out";
      out[key] = { packets: s.packetsSent || 0, bytes: s.bytesSent || 0 };
    }
    if (s.type === "remote-inbound-rtp") {
      const key = s.kind === "video" ? "video_out" : "audio_out";
      out[key] = Object.assign(out[key] || {}, { lost: s.packetsLost || 0,
        jitter_ms: s.jitter != null ? Math.round(s.jitter * 10000) / 10 : null });
    }
  });
  pair = pair || flagged || nominated || succeeded;
  if (pair) {
    const l = byId.get(pair.localCandidateId), r = byId.get(pair.remoteCandidateId);
    // a relay candidate's protocol is the relayed one (udp); relayProtocol is how we reach the TURN server
    const via = l && l.candidateType === "relay" && l.relayProtocol ? " (TURN over " + l.relayProtocol + ")" : "";
    out.selected = { local: l ? l.candidateType + " " + (l.address || l.ip || "") + " " + (l.protocol || "") + via : "?",
      remote: r ? r.candidateType + " " + (r.address || r.ip || "") + " " + (r.protocol || "") : "?" };
    if (pair.currentRoundTripTime != null) out.rtt_ms = Math.round(pair.currentRoundTripTime * 10000) / 10;
  }
  return out;
}

function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// ---------------------------------------------------------------------------------------------
// DOM
// ---------------------------------------------------------------------------------------------

// ---- live plot drawn from data (the kernel sends the points, LivePlot.render_data) -------------------
const PLOT_W = 640, PLOT_H = 180;
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

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function buildDom(el) {
  const root = h("div", "rm-widget");
  const bar = h("div", "rm-bar");
  const start = h("button", "rm-start", "Start");
  const stop = h("button", "rm-stop", "Stop");
  const mute = h("button", "rm-mute", "Mute");
  const mic = h("select", "rm-mic");
  const cam = h("select", "rm-cam");
  const statsBtn = h("button", "rm-stats-toggle", "Stats");
  stop.disabled = true; mute.disabled = true;
  mic.title = "Microphone"; cam.title = "Camera";
  bar.append(start, stop, mute, mic, cam, statsBtn);
  const status = h("div", "rm-status", "idle");
  const error = h("div", "rm-error");
  error.hidden = true;
  const media = h("div", "rm-media");
  const local = h("video", "rm-local");
  local.muted = true; local.autoplay = true; local.playsInline = true;
  const remote = h("video", "rm-remote");
  remote.autoplay = true; remote.playsInline = true;
  const remoteFrame = h("canvas", "rm-remote-frame");  // returned video over the WebSocket fallback
  remoteFrame.hidden = true;
  const audioOut = h("audio", "rm-audio-out");
  audioOut.autoplay = true;
  media.append(local, remote, remoteFrame, audioOut);
  const plot = h("canvas", "rm-plot");  // drawn from the kernel's data (drawPlot); PNG frames go to plotImg
  plot.setAttribute("aria-label", "live plot");
  plot.hidden = true;
  const plotImg = h("img", "rm-plot-png");
  plotImg.alt = "live plot";
  plotImg.hidden = true;
  const text = h("div", "rm-text");
  const stats = h("div", "rm-stats");
  stats.hidden = true;
  root.append(bar, status, error, media, plot, plotImg, text, stats);
  el.appendChild(root);
  return { root, start, stop, mute, mic, cam, statsBtn, status, error, media, local, remote, remoteFrame, audioOut, plot, plotImg, text, stats };
}

function fmt(v, unit = "") {
  return v === null || v === undefined ? "–" : String(v) + unit;
}

// ---------------------------------------------------------------------------------------------
// One view = one connection
// ---------------------------------------------------------------------------------------------

class StreamView {
  constructor(model, el) {
    this.model = model;
    this.ui = buildDom(el);
    this.host = detectHost();
    this.cfg = pageConfig();
    this.pc = null;
    this.rpc = null;
    this.dc = null;
    this.stream = null;
    this.peerId = "browser-" + Math.random().toString(36).slice(2, 10);
    this.pendingLocal = [];
    this.pendingRemote = [];
    this.answerApplied = false;
    this.timers = [];
    this.pings = new Map();
    this.rtts = [];
    this.pingSeq = 0;
    this.lastStats = null;
    this.permission = {};
    this.devices = { audioinput: [], videoinput: [] };
    this.partialLine = null;
    this.starting = false;
    this.disposed = false;
    this.ended = false;
    this.generation = 0;
    this.wsm = null;          // WsMediaLink while media goes over the WebSocket fallback
    this.dca = null;          // DcAudioLink while audio goes over the rm-audio data channel
    this.path = null;         // "webrtc" | "websocket" once media flows
    this.pathReason = "";
    this.fallbackTimer = null;
    this.localCandidates = 0;
    this._wire();
  }

  // -- ui ------------------------------------------------------------------------------------
  _wire() {
    const ui = this.ui;
    ui.start.onclick = () => this.start();
    ui.stop.onclick = () => this.stop("stopped");
    ui.mute.onclick = () => this.toggleMute();
    ui.statsBtn.onclick = () => { ui.stats.hidden = !ui.stats.hidden; this.renderStats(); };
    ui.mic.onchange = () => { if (this.pc || this.wsm) this.restart(); };
    ui.cam.onchange = () => { if (this.pc || this.wsm) this.restart(); };
    ui.cam.hidden = !this.model.get("video");
    ui.local.hidden = !this.model.get("video");
    ui.remote.hidden = true;
    ui.stats.hidden = !this.model.get("show_stats");
    this._onMsg = (msg, buffers) => this.onCustom(msg, buffers);
    this._onClosed = () => { if (this.model.get("closed")) this.stop("closed by the kernel", true); };
    this._onError = () => this.showKernelError();
    this.model.on("msg:custom", this._onMsg);
    this.model.on("change:closed", this._onClosed);
    this.model.on("change:error", this._onError);
    this.model.set("host", this.host);
    this.model.save_changes();
  }

  setStatus(text, state) {
    this.ui.status.textContent = text;
    if (state) {
      this.ui.root.dataset.state = state;
      this.model.set("state", state);
      this.model.save_changes();
    }
  }

  showError(message) {
    this.ui.error.textContent = message;
    this.ui.error.hidden = !message;
    this.model.set("browser_error", message || "");
    this.model.save_changes();
  }

  showKernelError() {
    const err = this.model.get("error");
    if (err) { this.ui.error.textContent = err; this.ui.error.hidden = false; this.setStatus("error", "error"); }
  }

  appendText(text, final = true, cls = "") {
    const ui = this.ui;
    if (!final) {
      if (!this.partialLine) { this.partialLine = h("div", "rm-line rm-partial"); ui.text.appendChild(this.partialLine); }
      this.partialLine.textContent = text;
    } else {
      if (this.partialLine) { this.partialLine.remove(); this.partialLine = null; }
      ui.text.appendChild(h("div", "rm-line " + cls, text));
      while (ui.text.childElementCount > MAX_TEXT_LINES) ui.text.firstElementChild.remove();
    }
    ui.text.scrollTop = ui.text.scrollHeight;
  }

  // Asks the kernel for ICE servers on every (re)connect, so short-lived TURN credentials are fresh; falls
  // back to the ones the widget was made with when the kernel does not answer in time.
  freshIceServers(timeoutMs = 3000) {
    const fallback = this.model.get("ice_servers") || [];
    const id = (this.iceRequests = (this.iceRequests || 0) + 1);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.iceWaiter = null; resolve(fallback); }, timeoutMs);
      this.iceWaiter = { id, done: (servers) => { clearTimeout(timer); this.iceWaiter = null; resolve(servers); } };
      try { this.model.send({ kind: "ice_request", id }); } catch (e) { this.iceWaiter.done(fallback); }
    });
  }

  onCustom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "ice_servers") {
      if (this.iceWaiter && this.iceWaiter.id === msg.id) this.iceWaiter.done(Array.isArray(msg.servers) ? msg.servers : []);
      return;
    }
    if (msg.kind === "plot-data") {
      drawPlot(this.ui.plot, msg, buffers || []);
      this.ui.plot.hidden = false;
    } else if (msg.kind === "plot" && buffers && buffers.length) {
      const img = this.ui.plotImg;
      const blob = new Blob([buffers[0]], { type: "image/png" });
      const url = URL.createObjectURL(blob);
      const old = img.dataset.url;
      img.src = url;
      img.dataset.url = url;
      img.dataset.frames = String((+img.dataset.frames || 0) + 1);
      img.hidden = false;
      if (old) URL.revokeObjectURL(old);
    } else if (msg.kind === "text") {
      this.appendText(msg.text, msg.final !== false, "rm-kernel");
    }
  }

  async fillDevices() {
    try {
      const all = await navigator.mediaDevices.enumerateDevices();
      this.devices = { audioinput: all.filter((d) => d.kind === "audioinput"), videoinput: all.filter((d) => d.kind === "videoinput") };
      for (const [sel, list] of [[this.ui.mic, this.devices.audioinput], [this.ui.cam, this.devices.videoinput]]) {
        const keep = sel.value;
        sel.replaceChildren(...list.map((d, i) => {
          const o = h("option", "", d.label || (d.kind === "audioinput" ? "microphone " : "camera ") + (i + 1));
          o.value = d.deviceId;
          return o;
        }));
        if (keep && list.some((d) => d.deviceId === keep)) sel.value = keep;
      }
    } catch (e) { /* enumerateDevices is best effort */ }
  }

  async queryPermissions() {
    if (!navigator.permissions) return;
    for (const name of ["microphone", "camera"]) {
      try { this.permission[name] = (await navigator.permissions.query({ name })).state; }
      catch (e) { this.permission[name] = "unknown"; }
    }
  }

  // -- preflight -----------------------------------------------------------------------------
  preflight() {
    if (this.model.get("error")) return this.model.get("error");
    if (this.model.get("closed")) return "This stream was closed in the kernel (handle.close()): re-run the cell to start a new one.";
    if (this.host === "vscode")
      return "VS Code notebooks cannot use the microphone or camera (its webviews deny getUserMedia). " +
        "Open this notebook in JupyterLab or Notebook 7 in a browser.";
    if (!window.isSecureContext)
      return "This page is not a secure context (http:// on a host other than localhost), so the browser " +
        "hides the microphone and camera. Open Jupyter over https:// or via http://localhost (e.g. an SSH tunnel).";
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
      return "This browser has no getUserMedia: use a recent Chrome, Firefox or Safari.";
    if (typeof RTCPeerConnection === "undefined" && this.transportSetting() === "webrtc")
      return "This browser has no WebRTC (RTCPeerConnection), and this stream is set to transport='webrtc'.";
    if (!this.model.get("session_id") || !this.model.get("ws_path")) return "No kernel session: re-run the cell.";
    if (!this.model.get("audio") && !this.model.get("video")) return "Nothing to stream: pass audio=True and/or video=True.";
    return null;
  }

  async checkExtension() {
    try {
      const r = await fetch(baseUrl(this.cfg) + "remotemedia/status", { headers: authHeaders(this.cfg), credentials: "same-origin" });
      if (r.status === 404) return "The remotemedia_nbrtc server extension is not loaded in this Jupyter server " +
        "(GET remotemedia/status: 404). Run `jupyter server extension enable remotemedia_nbrtc.server` and restart Jupyter.";
      if (r.status === 403) return "The Jupyter server refused the request (403): reload the page and log in again.";
      if (!r.ok) return null;  // not fatal: the WebSocket decides
      this.extensionStatus = await r.json();
    } catch (e) { /* offline or CORS: the WebSocket decides */ }
    return null;
  }

  // -- connect -------------------------------------------------------------------------------
  async start() {
    if (this.starting || this.pc || this.wsm || this.disposed) return;
    const problem = this.preflight();
    if (problem) { this.showError(problem); this.setStatus("cannot start", "error"); this.renderStats(); return; }
    this.starting = true;
    this.ended = false;
    const gen = ++this.generation;
    this.showError("");
    this.ui.start.disabled = true;
    this.ui.stop.disabled = false;
    try {
      this.setStatus("checking the server extension…", "starting");
      const extProblem = await this.checkExtension();
      if (extProblem) throw Object.assign(new Error(extProblem), { friendly: true });
      this.setStatus("opening microphone" + (this.model.get("video") ? " and camera" : "") + "…", "starting");
      await this.openMedia();
      if (gen !== this.generation) return;
      await this.fillDevices();
      await this.queryPermissions();
      this.setStatus("connecting to the kernel…", "connecting");
      await this.connect(gen);
    } catch (e) {
      if (gen !== this.generation) return;
      const msg = e && e.friendly ? e.message : (e && e.media ? friendlyMediaError(e.cause, this.host) : this.describeConnectError(e));
      this.showError(msg);
      this.teardown();
      this.setStatus("error", "error");
      if (e && e.media) {
        // the doctor panel shows why: the permission state and how many devices the browser sees
        await this.queryPermissions();
        await this.fillDevices();
        this.renderStats();
      }
    } finally {
      this.starting = false;
    }
  }

  describeConnectError(e) {
    if (e && e.rpc) {
      if (e.rpc.code === ERROR_CODES.SESSION_UNAVAILABLE) return "The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.";
      return "Signaling error " + e.rpc.code + ": " + e.rpc.message + (e.rpc.data ? " " + JSON.stringify(e.rpc.data) : "");
    }
    if (e && e.code !== undefined) {
      if (e.code === 4404) return "The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.";
      return "Could not open the signaling WebSocket (" + (e.code || "no code") + (e.reason ? ", " + e.reason : "") +
        "). Is the remotemedia_nbrtc server extension loaded, and is the kernel running?";
    }
    return "Connection failed: " + (e && e.message ? e.message : String(e));
  }

  async openMedia() {
    // audio_constraints / video_constraints from Python (sampleRate, width, frameRate, deviceId...) are
    // merged in; a device picked in the widget wins over a deviceId given in Python
    const audioExtra = this.model.get("audio_constraints") || {}, videoExtra = this.model.get("video_constraints") || {};
    const audio = this.model.get("audio")
      ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false, ...audioExtra,
          ...(this.ui.mic.value ? { deviceId: { exact: this.ui.mic.value } } : {}) }
      : false;
    const video = this.model.get("video")
      ? { ...videoExtra, ...(this.ui.cam.value ? { deviceId: { exact: this.ui.cam.value } } : {}) }
      : false;
    const bench = benchHook();  // BENCH HOOK
    const file = this.model.get("media_file");
    if (file && file.byteLength && !(bench && bench.stream)) { this.stream = await this.playMediaFile(file); return; }
    try {
      this.stream = bench && bench.stream ? await bench.stream() : await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (err) {
      throw { media: true, cause: err };
    }
    if (video) { this.ui.local.srcObject = this.stream; this.ui.local.hidden = false; }
  }

  // stream(media_file=...): play the file in a looping media element and stream what it plays
  async playMediaFile(bytes) {
    const type = this.model.get("media_file_type") || "";
    const el = h(type.startsWith("video/") ? "video" : "audio", "rm-media-file");
    el.loop = true; el.controls = true; el.playsInline = true;
    if (this.mediaFileUrl) URL.revokeObjectURL(this.mediaFileUrl);
    this.mediaFileUrl = URL.createObjectURL(new Blob([bytes], type ? { type } : {}));
    el.src = this.mediaFileUrl;
    this.ui.media.querySelectorAll(".rm-media-file").forEach((old) => old.remove());
    this.ui.media.appendChild(el);
    try {
      await el.play();
    } catch (err) {
      throw { media: true, cause: err };
    }
    const capture = el.captureStream ? el.captureStream() : el.mozCaptureStream();
    const t0 = performance.now();
    while (!capture.getTracks().length && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    if (!capture.getTracks().length) throw new Error("the media file gave no audio or video track");
    return capture;
  }

  async connect(gen) {
    const url = signalingUrl(this.cfg, this.model.get("ws_path"));
    this.rpc = new RpcSocket(url, (m, p) => this.onNotify(m, p), (ev) => this.onSocketClosed(ev));
    await this.rpc.open();
    if (gen !== this.generation) return;
    await this.rpc.call("peer.announce", { peer_id: this.peerId, capabilities: ["audio", "video", "data"],
      user_data: { host: this.host, ua: navigator.userAgent } });
    this.timers.push(setInterval(() => this.pollStats(), STATS_INTERVAL_MS));
    const setting = this.transportSetting();
    if (setting === "websocket") return this.startWsMedia(gen, "forced by setting (transport='websocket')");
    if (typeof RTCPeerConnection === "undefined") return this.startWsMedia(gen, "this browser has no WebRTC (RTCPeerConnection)");
    if (setting === "auto") {
      const s = +this.model.get("webrtc_timeout_s") || 5;
      this.fallbackTimer = setTimeout(() => this.fallBack(gen, "WebRTC not connected within " + s + " s" + this.iceHint()), s * 1000);
    }
    try {
      await this.connectWebRtc(gen);
    } catch (e) {
      if (gen !== this.generation || this.wsm || this.path) return;  // superseded, or already fell back
      const forced = e && e.rpc && e.rpc.data && e.rpc.data.transport === "websocket";
      if (setting !== "auto" || (e && e.rpc && e.rpc.code === ERROR_CODES.SESSION_UNAVAILABLE)) throw e;
      await this.fallBack(gen, forced ? "the kernel allows WebSocket media only (transport='websocket')"
        : "WebRTC setup failed: " + (e && e.message ? e.message : String(e)));
    }
  }

  transportSetting() {
    const t = this.model.get("transport");
    return t === "webrtc" || t === "websocket" ? t : "auto";
  }

  // Why ICE did not get anywhere, for the fallback reason shown in the doctor panel.
  iceHint() {
    const pc = this.pc;
    if (!pc) return "";
    let hint = " (ICE " + pc.iceConnectionState + ", " + this.localCandidates + " usable local candidate(s)";
    if (!this.localCandidates) hint += ": UDP blocked, or relay-only without a reachable TURN server, or no network but loopback";
    return hint + ")";
  }

  async connectWebRtc(gen) {
    const loopback = this.model.get("loopback_only");
    const policy = this.model.get("ice_transport_policy") === "relay" ? "relay" : "all";
    const iceServers = loopback ? [] : await this.freshIceServers();
    if (gen !== this.generation) return;
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy });
    this.pc = pc;
    this.audioTransport = resolveAudioTransport(this.model.get("audio_transport"), loopback, window.location.hostname);
    const audioOnDc = this.audioTransport === "datachannel" && this.stream.getAudioTracks().length > 0;
    for (const track of this.stream.getTracks()) {
      if (!(audioOnDc && track.kind === "audio")) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    }
    const dc = pc.createDataChannel("pipeline-data", { ordered: true });
    this.dc = dc;
    if (audioOnDc) this.startDcAudio(pc, gen);
    dc.onmessage = (ev) => this.onData(ev.data);
    dc.onopen = () => this.onDataOpen();
    pc.onicecandidate = (ev) => this.onLocalCandidate(ev.candidate);
    pc.ontrack = (ev) => this.onRemoteTrack(ev);
    pc.onconnectionstatechange = () => this.onPcState(pc.connectionState);
    const bench = benchHook();  // BENCH HOOK
    if (bench && bench.onPeer) bench.onPeer(pc, dc);

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (policy === "all") this.timers.push(setTimeout(() => this.checkNoCandidates(gen, pc), NO_CANDIDATE_MS));
    const answerP = this.rpc.call("peer.offer", { from: this.peerId, to: SERVER_PEER_ID, sdp: pc.localDescription.sdp });
    // Trickle: our candidates go right behind the offer (the server queues them until it has applied it),
    // so its ICE checks can start as soon as it answers instead of one signaling hop later.
    this.offerSent = true;
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
    const answer = await answerP;
    if (gen !== this.generation || this.pc !== pc) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.answerApplied = true;
    this.applyJitterTarget();
    for (const c of this.pendingRemote.splice(0)) await this.addRemoteCandidate(c);
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
    if (this.pc === pc && !this.path) this.setStatus("answer applied, ICE checking…", "connecting");
  }

  // No local candidate at all: WebRTC cannot connect, so "auto" moves to the WebSocket now instead of after
  // webrtc_timeout_s, and "webrtc" says why it waits.
  checkNoCandidates(gen, pc) {
    if (gen !== this.generation || this.pc !== pc || this.path || this.localCandidates) return;
    if (this.transportSetting() === "auto") this.fallBack(gen, NO_NETWORK_REASON);
    else this.setStatus("WebRTC cannot connect: " + NO_NETWORK_REASON, "connecting");
  }

  // Audio both ways on the rm-audio data channel (created before the offer; worklets start meanwhile).
  startDcAudio(pc, gen) {
    const bench = benchHook();  // BENCH HOOK: the bench's AudioContext, and its onset detector on our playout
    const link = new DcAudioLink(pc, this.stream, { marginMs: +this.model.get("jitter_buffer_ms") || 0,
      ctx: bench && bench.audioContext ? bench.audioContext() : null,
      onPlayout: bench && bench.onPlayout ? (node) => bench.onPlayout(node) : null });
    this.dca = link;
    link.ready.then(() => {
      if (gen === this.generation && this.dca === link) this.resumeOnClick(link.ctx, () => this.dca === link);
    }).catch((e) => {
      if (gen === this.generation && this.dca === link) this.fail("Could not start data-channel audio: " + (e && e.message ? e.message : String(e)));
    });
  }

  // Autoplay policy: without a user gesture an AudioContext stays suspended and captures/plays nothing.
  resumeOnClick(ctx, stillCurrent) {
    if (!ctx || ctx.state !== "suspended") return;
    this.showError("Click anywhere in this widget to start the audio (the browser wants a click first).");
    const resume = () => {
      if (!stillCurrent()) return;
      ctx.resume().then(() => { if (stillCurrent()) this.showError(""); }).catch(() => {});
    };
    this.ui.root.addEventListener("click", resume, { once: true });
  }

  clearFallback() {
    if (this.fallbackTimer) clearTimeout(this.fallbackTimer);
    this.fallbackTimer = null;
  }

  reportPath(path, reason) {
    this.path = path;
    this.pathReason = reason;
    this.ui.root.dataset.path = path || "";
    this.model.set("path", path || "");
    this.model.set("path_reason", reason || "");
    this.model.save_changes();
    this.renderStats();
  }

  // WebRTC did not connect in time (or failed): drop the peer connection, carry media over the WebSocket.
  async fallBack(gen, reason) {
    if (gen !== this.generation || this.path || this.wsm || this.ended) return;
    this.clearFallback();
    const pc = this.pc, dc = this.dc;
    this.pc = null; this.dc = null; this.lastStats = null;
    if (this.dca) { this.dca.close(); this.dca = null; }
    if (dc) { dc.onmessage = null; dc.onopen = null; try { dc.close(); } catch (e) {} }
    if (pc) {
      pc.onconnectionstatechange = null; pc.onicecandidate = null; pc.ontrack = null;
      try { pc.close(); } catch (e) {}
    }
    this.pendingLocal = []; this.pendingRemote = []; this.answerApplied = false; this.offerSent = false;
    try {
      await this.startWsMedia(gen, reason);
    } catch (e) {
      if (gen === this.generation) this.fail("WebRTC did not connect (" + reason + ") and the WebSocket media fallback failed: " +
        (e && e.rpc ? this.describeConnectError(e) : (e && e.message) || String(e)));
    }
  }

  async startWsMedia(gen, reason) {
    this.clearFallback();
    this.setStatus("connecting over the WebSocket (" + reason + ")…", "connecting");
    const m = this.model;
    const link = new WsMediaLink(this.rpc, this.stream, this.ui, { audioCodec: m.get("ws_audio_codec"),
      pcmRate: m.get("ws_pcm_rate"), video: m.get("video"), videoCodec: m.get("ws_video_codec") || "jpeg",
      maxFps: m.get("ws_max_fps") || 10 });
    this.wsm = link;
    this.rpc.onBinary = (buf) => link.onBinary(buf);
    try {
      await link.open();
    } catch (e) {
      link.close();
      if (this.wsm === link) this.wsm = null;
      throw e;
    }
    if (gen !== this.generation || this.wsm !== link) { link.close(); return; }
    this.reportPath("websocket", reason);
    this.setStatus("connected over the WebSocket (" + reason + ")", "connected");
    this.resumeOnClick(link.ctx, () => this.wsm === link && !!link.ctx);
    this.ui.mute.disabled = false;
    this.onDataOpen();
    this.pollStats();
  }

  onLocalCandidate(candidate) {
    const c = candidate
      ? { candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_m_line_index: candidate.sdpMLineIndex }
      : { candidate: "", sdp_mid: null, sdp_m_line_index: null };
    if (candidate && !keepCandidate(candidate.candidate, this.model.get("loopback_only"))) return;
    if (candidate) this.localCandidates++;
    if (!this.offerSent) this.pendingLocal.push(c);
    else this.sendCandidate(c);
  }

  // jitterBufferTarget (ms) on every receiver: how long the browser holds received audio/video before
  // playing it (null: the browser's adaptive default). Set from Python (`jitter_buffer_ms`).
  applyJitterTarget() {
    const ms = this.model.get("jitter_buffer_ms");
    if (!this.pc || ms === null || ms === undefined) return;
    for (const r of this.pc.getReceivers()) {
      if ("jitterBufferTarget" in r) try { r.jitterBufferTarget = ms; } catch (e) { /* out of range */ }
    }
  }

  sendCandidate(c) {
    if (!this.rpc) return;
    this.rpc.call("peer.ice_candidate", { from: this.peerId, to: SERVER_PEER_ID, ...c }).catch(() => {});
  }

  async addRemoteCandidate(p) {
    if (!this.pc) return;
    try {
      if (!p.candidate) { await this.pc.addIceCandidate(null); return; }
      if (!keepCandidate(p.candidate, this.model.get("loopback_only"))) return;
      await this.pc.addIceCandidate({ candidate: p.candidate, sdpMid: p.sdp_mid ?? p.sdpMid ?? null,
        sdpMLineIndex: p.sdp_m_line_index ?? p.sdpMLineIndex ?? 0 });
    } catch (e) { /* a bad or late candidate is not fatal */ }
  }

  onNotify(method, params) {
    if (method === "media.output") { this.onOutput(params); return; }
    if (this.wsm && method.startsWith("peer.")) return;  // the abandoned WebRTC attempt
    if (method === "peer.ice_candidate") {
      if (!this.answerApplied) this.pendingRemote.push(params);
      else this.addRemoteCandidate(params);
    } else if (method === "peer.state_change") {
      this.serverState = params.connection_state;
      if (params.connection_state === "failed" && this.transportSetting() === "auto" && !this.path) {
        this.fallBack(this.generation, "the kernel's peer reported ICE failure" + this.iceHint());
        return;
      }
      if (params.connection_state === "failed") this.fail("The kernel's peer reported ICE failure: no network path between this browser and the kernel.");
      if (params.connection_state === "closed" && this.pc) this.fail("The kernel closed the connection.");
    } else if (method === "__error__") {
      if (params.code === ERROR_CODES.SESSION_UNAVAILABLE) this.fail("The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.");
      else this.fail("Signaling error " + params.code + ": " + params.message);
    }
  }

  onSocketClosed(ev) {
    if (this.ended || this.disposed) return;
    if (ev && ev.code === 4404) this.fail("The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.");
    else if (this.pc && this.pc.connectionState === "connected")
      this.fail("The signaling connection to the kernel closed (kernel restarted, or the handle was closed). Re-run the cell.");
    else this.fail("The signaling connection closed" + (ev && ev.reason ? ": " + ev.reason : "") + ".");
  }

  onRemoteTrack(ev) {
    this.applyJitterTarget();
    const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
    if (ev.track.kind === "video") {
      this.ui.remote.srcObject = stream;
      this.ui.remote.hidden = false;
    } else {
      this.ui.audioOut.srcObject = stream;
      this.ui.audioOut.play().catch(() => { /* autoplay needs a click: Start counts */ });
    }
  }

  onPcState(state) {
    if (state === "connected") {
      this.clearFallback();
      if (!this.path) this.reportPath("webrtc", this.transportSetting() === "webrtc" ? "forced by setting (transport='webrtc')" : "WebRTC connected");
      this.setStatus("connected" + (this.extensionStatus ? " (extension " + this.extensionStatus.version + ")" : ""), "connected");
      this.ui.mute.disabled = false;
    } else if (state === "failed" && this.transportSetting() === "auto" && !this.path) {
      this.fallBack(this.generation, "ICE failed" + this.iceHint());
    } else if (state === "failed") {
      this.fail("ICE failed: no network path between this browser and the kernel (a TURN server may be needed).");
    } else if (state === "disconnected") {
      this.setStatus("connection interrupted…", "disconnected");
    } else if (state !== "closed") {
      this.setStatus(state + "…", state);
    }
  }

  onDataOpen() {
    if (this.model.get("latency_probe")) {
      this.sendPing();
      this.timers.push(setInterval(() => this.sendPing(), PING_INTERVAL_MS));
    }
  }

  sendPing() {
    if (!this.wsm && (!this.dc || this.dc.readyState !== "open")) return;
    const id = ++this.pingSeq;
    this.pings.set(id, performance.now());
    if (this.pings.size > 20) this.pings.delete(this.pings.keys().next().value);
    this.sendData(JSON.stringify({ type: "json", value: { kind: "rm.ping", id, peer: this.peerId } }));
  }

  // One data-channel style message to the pipeline, over whichever path is in use.
  sendData(text) {
    if (this.wsm) this.wsm.sendMessage(text);
    else if (this.dc && this.dc.readyState === "open") this.dc.send(text);
  }

  onData(raw) {
    if (typeof raw !== "string") return;  // binary outputs are not shown
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { this.appendText(raw); return; }
    this.onOutput(msg);
  }

  // One pipeline output: data-channel JSON (WebRTC) or `media.output` params (WebSocket media).
  onOutput(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "text") {
      const partial = msg.channel === "partial" || msg.final === false;
      this.appendText(msg.text, !partial);
    } else if (msg.type === "json") {
      const v = msg.value;
      if (v && v.kind === "rm.ping") {
        if (v.peer !== this.peerId || !this.pings.has(v.id)) return;
        const rtt = performance.now() - this.pings.get(v.id);
        this.pings.delete(v.id);
        this.rtts.push(rtt);
        if (this.rtts.length > 10) this.rtts.shift();
        this.renderStats();
      } else if (v && typeof v.text === "string") {
        this.appendText(v.text, v.final !== false && v.is_final !== false);
      }
    } else if (msg.type === "error") {
      this.appendText("⚠ " + (msg.node ? msg.node + ": " : "") + msg.message, true, "rm-line-error");
    } else if (msg.type === "metrics") {
      this.kernelMetrics = msg.value;
    }
  }

  async pollStats() {
    if (this.pc) {
      try { this.lastStats = await collectStats(this.pc); } catch (e) { return; }
      // the kernel side of the return path: what its latency policy trimmed, and the silence it sent
      if (this.rpc && this.pc.connectionState === "connected") {
        try { this.kernelStats = await this.rpc.call("media.stats", {}, 3000); } catch (e) { /* not yet offered */ }
      }
    } else if (!this.wsm) return;
    this.renderStats();
    const latency = median(this.rtts);
    this.model.set("browser_stats", { ...(this.lastStats || {}), path: this.path, path_reason: this.pathReason,
      transport_setting: this.transportSetting(), websocket: this.wsm ? this.wsm.stats() : null,
      audio_transport: this.wsm ? "websocket" : this.audioTransport || null, dc_audio: this.dca ? this.dca.stats() : null, e2e_rtt_ms: latency === null ? null : Math.round(latency * 10) / 10,
      pings_answered: this.rtts.length, host: this.host, secure_context: window.isSecureContext,
      permission: this.permission, devices: { audioinput: this.devices.audioinput.length, videoinput: this.devices.videoinput.length } });
    this.model.save_changes();
  }

  renderStats() {
    const ui = this.ui;
    if (ui.stats.hidden) return;
    const s = this.lastStats || {};
    const latency = median(this.rtts);
    const rows = [
      ["host", this.host],
      ["secure context", String(window.isSecureContext)],
      ["permission", Object.entries(this.permission).map(([k, v]) => k + ": " + v).join(", ") || "–"],
      ["devices", this.devices.audioinput.length + " mic(s), " + this.devices.videoinput.length + " camera(s)"],
      ["path", this.path ? this.path + " (reason: " + this.pathReason + ")" : (this.pc ? "trying WebRTC…" : "–")],
      ["transport setting", this.transportSetting() + (this.transportSetting() === "auto" ? ", WebSocket fallback after " + (+this.model.get("webrtc_timeout_s") || 5) + " s" : "")],
      ["connection", this.pc ? this.pc.connectionState : (this.wsm ? "websocket " + (this.rpc && this.rpc.ws && this.rpc.ws.readyState === WebSocket.OPEN ? "open" : "closed") : "–")],
      ["ICE local", Object.entries(s.local_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
      ["ICE remote", Object.entries(s.remote_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
      ["selected pair", s.selected ? s.selected.local + " ⇄ " + s.selected.remote : "–"],
      ["ICE RTT", fmt(s.rtt_ms, " ms")],
      ["audio out", s.audio_out ? s.audio_out.packets + " pkts" + (s.audio_out.lost != null ? ", lost " + s.audio_out.lost : "") : "–"],
      ["audio in", s.audio_in ? s.audio_in.packets + " pkts, lost " + s.audio_in.lost + ", jitter " + fmt(s.audio_in.jitter_ms, " ms") : "–"],
      ["video in", s.video_in ? s.video_in.packets + " pkts, lost " + s.video_in.lost : "–"],
      ["audio path", this.dca ? dcAudioSummary(this.dca.stats()) : this.wsm ? "WebSocket media"
        : this.pc && this.audioTransport === "rtp" ? "RTP (Opus media tracks)" : "–"],
      ["kernel audio out", kernelAudioOutSummary(this.kernelStats)],
      ["end-to-end RTT", latency === null ? (this.model.get("latency_probe") ? (this.ended ? "–" : "measuring…") : "off") : latency.toFixed(1) + " ms (browser → kernel pipeline → browser)"],
    ];
    if (this.wsm) {
      const webrtcOnly = new Set(["ICE local", "ICE remote", "selected pair", "ICE RTT", "audio out", "audio in", "video in"]);
      for (let i = rows.length - 1; i >= 0; i--) if (webrtcOnly.has(rows[i][0])) rows.splice(i, 1);
      const w = this.wsm.stats(), k = w.kernel;
      rows.push(
        ["ws codecs", "audio " + (w.audio_codec || "–") + ", video " + (w.video_codec || "–")],
        ["ws sent", w.audio_frames_sent + " audio, " + w.video_frames_sent + " video frames, " + Math.round(w.bytes_sent / 1024) + " KiB"],
        ["ws drops", "audio " + w.audio_drops + ", video " + w.video_drops + " (replaced) + " + w.video_skipped + " (skipped); returned audio " + w.audio_out_drops],
        ["ws buffered", w.buffered_bytes + " B in the socket, " + w.audio_queued + " audio frame(s) queued"],
        ["ws received", w.audio_frames_received + " audio, " + w.video_frames_received + " video frames"],
        ["kernel in", k ? k.audio_frames_in + " audio, " + k.video_frames_in + " video frames; gaps " + k.seq_gaps + ", drops audio " + fmt(k.audio_drops) + " video " + fmt(k.video_drops) : "–"],
      );
    }
    const table = h("table", "rm-stats-table");
    for (const [k, v] of rows) {
      const tr = h("tr", "rm-stat");
      tr.dataset.key = k;
      tr.append(h("th", "", k), h("td", "", v));
      table.appendChild(tr);
    }
    ui.stats.replaceChildren(table);
  }

  toggleMute() {
    if (!this.stream) return;
    const tracks = this.stream.getAudioTracks();
    const muted = tracks.length && tracks[0].enabled;
    tracks.forEach((t) => (t.enabled = !muted));
    this.ui.mute.textContent = muted ? "Unmute" : "Mute";
    this.ui.root.dataset.muted = muted ? "true" : "false";
  }

  async restart() {
    this.teardown();
    await this.start();
  }

  fail(message) {
    if (this.ended) return;
    this.showError(message);
    this.teardown();
    this.setStatus("ended", "error");
  }

  stop(reason, byKernel = false) {
    this.teardown();
    this.setStatus(reason || "stopped", byKernel ? "closed" : "stopped");
  }

  teardown() {
    this.ui.media.querySelectorAll(".rm-media-file").forEach((el) => el.pause());
    this.ended = true;
    this.generation++;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.clearFallback();
    if (this.wsm) { this.wsm.close(); this.wsm = null; }
    if (this.dca) { this.dca.close(); this.dca = null; }
    if (this.path) this.reportPath(null, "");
    this.localCandidates = 0;
    this.audioTransport = null;
    if (this.dc) { try { this.dc.close(); } catch (e) {} this.dc = null; }
    if (this.pc) { try { this.pc.close(); } catch (e) {} this.pc = null; }
    if (this.rpc) { this.rpc.close(); this.rpc = null; }
    if (this.stream) { this.stream.getTracks().forEach((t) => t.stop()); this.stream = null; }
    this.pendingLocal = []; this.pendingRemote = []; this.answerApplied = false; this.offerSent = false;
    this.pings.clear();
    this.rtts = []; this.lastStats = null; this.kernelStats = null;
    const ui = this.ui;
    ui.start.disabled = false; ui.stop.disabled = true; ui.mute.disabled = true;
    ui.local.srcObject = null; ui.remote.srcObject = null; ui.audioOut.srcObject = null; ui.remoteFrame.hidden = true;
    this.peerId = "browser-" + Math.random().toString(36).slice(2, 10);
    this.renderStats();  // no stale "connected" / RTT rows once the connection is gone
  }

  dispose() {
    this.disposed = true;
    this.teardown();
    this.model.off("msg:custom", this._onMsg);
    this.model.off("change:closed", this._onClosed);
    this.model.off("change:error", this._onError);
    const url = this.ui.plotImg.dataset.url;
    if (url) URL.revokeObjectURL(url);
  }
}

function render({ model, el }) {
  const view = new StreamView(model, el);
  if (model.get("error")) view.showKernelError();
  else if (model.get("closed")) view.setStatus("closed by the kernel", "closed");
  else if (model.get("autostart")) view.start();
  return () => view.dispose();
}

export default { render };
