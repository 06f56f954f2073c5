// remotemedia_nbrtc stream widget: browser mic/camera -> WebRTC -> pipeline in the kernel -> results.
// One ESM file, no build step. Signaling is RemoteMedia's JSON-RPC 2.0 over the server extension's
// WebSocket (<base_url>remotemedia/ws/<session_id>): peer.announce, peer.offer answered in the result,
// trickle ICE both ways, peer.state_change notifications.

const SERVER_PEER = "remotemedia-server";
const RPC_TIMEOUT_MS = 20000;
const STATS_INTERVAL_MS = 1000;
const PING_INTERVAL_MS = 1000;
const MAX_TEXT_LINES = 200;

// ---------------------------------------------------------------------------------------------
// Page and host
// ---------------------------------------------------------------------------------------------

export function pageConfig(doc = document) {
  const el = doc.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent || "{}");
  } catch (e) {
    return null;
  }
}

export function readCookie(name, doc = document) {
  const m = (doc.cookie || "").match("(^|;)\\s*" + name + "\\s*=\\s*([^;]+)");
  return m ? decodeURIComponent(m.pop()) : "";
}

export function detectHost(win = window) {
  const cfg = pageConfig(win.document);
  if (win.google && win.google.colab) return "colab";
  const proto = (win.location && win.location.protocol) || "";
  if (proto.startsWith("vscode") || typeof win.acquireVsCodeApi === "function") return "vscode";
  if (cfg && /notebook/i.test(cfg.appName || "")) return "notebook7";
  if (cfg && /lab/i.test(cfg.appName || "")) return "jupyterlab";
  if (cfg) return "jupyter";
  return "unknown";
}

function baseUrl(cfg) {
  let base = (cfg && cfg.baseUrl) || "/";
  if (!base.endsWith("/")) base += "/";
  return base;
}

function authParams(cfg) {
  const q = new URLSearchParams();
  if (cfg && cfg.token) q.set("token", cfg.token);
  const xsrf = readCookie("_xsrf");
  if (xsrf) q.set("_xsrf", xsrf);
  return q;
}

function authHeaders(cfg) {
  const h = {};
  if (cfg && cfg.token) h["Authorization"] = "token " + cfg.token;
  const xsrf = readCookie("_xsrf");
  if (xsrf) h["X-XSRFToken"] = xsrf;
  return h;
}

export function signalingUrl(cfg, wsPath, loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  const q = authParams(cfg).toString();
  return scheme + "//" + loc.host + baseUrl(cfg) + wsPath + (q ? "?" + q : "");
}

// Keep only loopback candidates (tests / hermetic CI); returns null to drop the candidate.
export function keepCandidate(candidateLine, loopbackOnly) {
  if (!loopbackOnly || !candidateLine) return true;
  return / 127\.\d+\.\d+\.\d+ /.test(candidateLine);
}

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

// ---------------------------------------------------------------------------------------------
// JSON-RPC over WebSocket
// ---------------------------------------------------------------------------------------------

class RpcSocket {
  constructor(url, onNotify, onClose) {
    this.url = url;
    this.onNotify = onNotify;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.closedByUs = false;
  }

  open(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => {
        if (!settled) { settled = true; reject(new Error("timed out opening the signaling WebSocket")); ws.close(); }
      }, timeoutMs);
      ws.onopen = () => { if (!settled) { settled = true; clearTimeout(timer); resolve(); } };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        clearTimeout(timer);
        for (const [, p] of this.pending) p.reject(new Error("signaling connection closed"));
        this.pending.clear();
        if (!settled) { settled = true; reject(Object.assign(new Error("signaling WebSocket failed"), { code: ev.code, reason: ev.reason })); return; }
        if (!this.closedByUs && this.onClose) this.onClose(ev);
      };
      ws.onmessage = (ev) => this._onMessage(ev.data);
    });
  }

  _onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p.reject(Object.assign(new Error(msg.error.message), { rpc: msg.error }));
      else p.resolve(msg.result);
      return;
    }
    if (msg.method) { this.onNotify(msg.method, msg.params || {}); return; }
    if (msg.error) this.onNotify("__error__", msg.error);  // an error without a request (e.g. session gone)
  }

  call(method, params, timeoutMs = RPC_TIMEOUT_MS) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("signaling not connected"));
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(method + " timed out")); }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
    this.ws.send(JSON.stringify({ jsonrpc: "2.0", method, params, id }));
    return p;
  }

  close() {
    this.closedByUs = true;
    if (this.ws) try { this.ws.close(1000, "client closed"); } catch (e) {}
  }
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
    out.selected = { local: l ? l.candidateType + " " + (l.address || l.ip || "") + " " + (l.protocol || "") : "?",
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
  const audioOut = h("audio", "rm-audio-out");
  audioOut.autoplay = true;
  media.append(local, remote, audioOut);
  const plot = h("img", "rm-plot");
  plot.alt = "live plot";
  plot.hidden = true;
  const text = h("div", "rm-text");
  const stats = h("div", "rm-stats");
  stats.hidden = true;
  root.append(bar, status, error, media, plot, text, stats);
  el.appendChild(root);
  return { root, start, stop, mute, mic, cam, statsBtn, status, error, media, local, remote, audioOut, plot, text, stats };
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
    this._wire();
  }

  // -- ui ------------------------------------------------------------------------------------
  _wire() {
    const ui = this.ui;
    ui.start.onclick = () => this.start();
    ui.stop.onclick = () => this.stop("stopped");
    ui.mute.onclick = () => this.toggleMute();
    ui.statsBtn.onclick = () => { ui.stats.hidden = !ui.stats.hidden; this.renderStats(); };
    ui.mic.onchange = () => { if (this.pc) this.restart(); };
    ui.cam.onchange = () => { if (this.pc) this.restart(); };
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

  onCustom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "plot" && buffers && buffers.length) {
      const blob = new Blob([buffers[0]], { type: "image/png" });
      const url = URL.createObjectURL(blob);
      const old = this.ui.plot.dataset.url;
      this.ui.plot.src = url;
      this.ui.plot.dataset.url = url;
      this.ui.plot.dataset.frames = String((+this.ui.plot.dataset.frames || 0) + 1);
      this.ui.plot.hidden = false;
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
    if (typeof RTCPeerConnection === "undefined") return "This browser has no WebRTC (RTCPeerConnection).";
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
    if (this.starting || this.pc || this.disposed) return;
    const problem = this.preflight();
    if (problem) { this.showError(problem); this.setStatus("cannot start", "error"); return; }
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
    } finally {
      this.starting = false;
    }
  }

  describeConnectError(e) {
    if (e && e.rpc) {
      if (e.rpc.code === -32000) return "The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.";
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
    const audio = this.model.get("audio")
      ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false,
          ...(this.ui.mic.value ? { deviceId: { exact: this.ui.mic.value } } : {}) }
      : false;
    const video = this.model.get("video")
      ? (this.ui.cam.value ? { deviceId: { exact: this.ui.cam.value } } : true)
      : false;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (err) {
      throw { media: true, cause: err };
    }
    if (video) { this.ui.local.srcObject = this.stream; this.ui.local.hidden = false; }
  }

  async connect(gen) {
    const url = signalingUrl(this.cfg, this.model.get("ws_path"));
    this.rpc = new RpcSocket(url, (m, p) => this.onNotify(m, p), (ev) => this.onSocketClosed(ev));
    await this.rpc.open();
    if (gen !== this.generation) return;
    await this.rpc.call("peer.announce", { peer_id: this.peerId, capabilities: ["audio", "video", "data"],
      user_data: { host: this.host, ua: navigator.userAgent } });

    const loopback = this.model.get("loopback_only");
    const pc = new RTCPeerConnection({ iceServers: loopback ? [] : this.model.get("ice_servers") || [] });
    this.pc = pc;
    for (const track of this.stream.getTracks()) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    const dc = pc.createDataChannel("pipeline-data", { ordered: true });
    this.dc = dc;
    dc.onmessage = (ev) => this.onData(ev.data);
    dc.onopen = () => this.onDataOpen();
    pc.onicecandidate = (ev) => this.onLocalCandidate(ev.candidate);
    pc.ontrack = (ev) => this.onRemoteTrack(ev);
    pc.onconnectionstatechange = () => this.onPcState(pc.connectionState);

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const answer = await this.rpc.call("peer.offer", { from: this.peerId, to: SERVER_PEER, sdp: pc.localDescription.sdp });
    if (gen !== this.generation) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.answerApplied = true;
    for (const c of this.pendingRemote.splice(0)) await this.addRemoteCandidate(c);
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
    this.setStatus("answer applied, ICE checking…", "connecting");
    this.timers.push(setInterval(() => this.pollStats(), STATS_INTERVAL_MS));
  }

  onLocalCandidate(candidate) {
    const c = candidate
      ? { candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_m_line_index: candidate.sdpMLineIndex }
      : { candidate: "", sdp_mid: null, sdp_m_line_index: null };
    if (candidate && !keepCandidate(candidate.candidate, this.model.get("loopback_only"))) return;
    if (!this.answerApplied) this.pendingLocal.push(c);
    else this.sendCandidate(c);
  }

  sendCandidate(c) {
    if (!this.rpc) return;
    this.rpc.call("peer.ice_candidate", { from: this.peerId, to: SERVER_PEER, ...c }).catch(() => {});
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
    if (method === "peer.ice_candidate") {
      if (!this.answerApplied) this.pendingRemote.push(params);
      else this.addRemoteCandidate(params);
    } else if (method === "peer.state_change") {
      this.serverState = params.connection_state;
      if (params.connection_state === "failed") this.fail("The kernel's peer reported ICE failure: no network path between this browser and the kernel.");
      if (params.connection_state === "closed" && this.pc) this.fail("The kernel closed the connection.");
    } else if (method === "__error__") {
      if (params.code === -32000) this.fail("The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.");
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
      this.setStatus("connected" + (this.extensionStatus ? " (extension " + this.extensionStatus.version + ")" : ""), "connected");
      this.ui.mute.disabled = false;
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
    if (!this.dc || this.dc.readyState !== "open") return;
    const id = ++this.pingSeq;
    this.pings.set(id, performance.now());
    if (this.pings.size > 20) this.pings.delete(this.pings.keys().next().value);
    this.dc.send(JSON.stringify({ type: "json", value: { kind: "rm.ping", id, peer: this.peerId } }));
  }

  onData(raw) {
    if (typeof raw !== "string") return;  // binary outputs are not shown
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { this.appendText(raw); return; }
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
    if (!this.pc) return;
    try { this.lastStats = await collectStats(this.pc); } catch (e) { return; }
    this.renderStats();
    const latency = median(this.rtts);
    this.model.set("browser_stats", { ...this.lastStats, e2e_rtt_ms: latency === null ? null : Math.round(latency * 10) / 10,
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
      ["connection", this.pc ? this.pc.connectionState : "–"],
      ["ICE local", Object.entries(s.local_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
      ["ICE remote", Object.entries(s.remote_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
      ["selected pair", s.selected ? s.selected.local + " ⇄ " + s.selected.remote : "–"],
      ["ICE RTT", fmt(s.rtt_ms, " ms")],
      ["audio out", s.audio_out ? s.audio_out.packets + " pkts" + (s.audio_out.lost != null ? ", lost " + s.audio_out.lost : "") : "–"],
      ["audio in", s.audio_in ? s.audio_in.packets + " pkts, lost " + s.audio_in.lost + ", jitter " + fmt(s.audio_in.jitter_ms, " ms") : "–"],
      ["video in", s.video_in ? s.video_in.packets + " pkts, lost " + s.video_in.lost : "–"],
      ["end-to-end RTT", latency === null ? (this.model.get("latency_probe") ? "measuring…" : "off") : latency.toFixed(1) + " ms (browser → kernel pipeline → browser)"],
    ];
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
    this.ended = true;
    this.generation++;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.dc) { try { this.dc.close(); } catch (e) {} this.dc = null; }
    if (this.pc) { try { this.pc.close(); } catch (e) {} this.pc = null; }
    if (this.rpc) { this.rpc.close(); this.rpc = null; }
    if (this.stream) { this.stream.getTracks().forEach((t) => t.stop()); this.stream = null; }
    this.pendingLocal = []; this.pendingRemote = []; this.answerApplied = false;
    this.pings.clear();
    const ui = this.ui;
    ui.start.disabled = false; ui.stop.disabled = true; ui.mute.disabled = true;
    ui.local.srcObject = null; ui.remote.srcObject = null; ui.audioOut.srcObject = null;
    this.peerId = "browser-" + Math.random().toString(36).slice(2, 10);
  }

  dispose() {
    this.disposed = true;
    this.teardown();
    this.model.off("msg:custom", this._onMsg);
    this.model.off("change:closed", this._onClosed);
    this.model.off("change:error", this._onError);
    const url = this.ui.plot.dataset.url;
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
