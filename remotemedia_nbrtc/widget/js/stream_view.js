// The widget's view: one per displayed output, one connection at a time. Signaling is RemoteMedia's JSON-RPC
// 2.0 over the server extension's WebSocket (rpc_socket.js): peer.announce, peer.offer answered in the result,
// trickle ICE both ways, peer.state_change notifications; media over WebRTC, or the WebSocket fallback.

import { ERROR_CODES, METHODS, NOTIFICATIONS } from "./protocol.js";
import { authHeaders, baseUrl, benchHook, detectHost, pageConfig, resolveAudioTransport, signalingUrl } from "./config.js";
import { RpcSocket, UNSOLICITED_ERROR } from "./rpc_socket.js";
import { WsMediaLink } from "./ws_media_link.js";
import { WebRtcLink } from "./webrtc_link.js";
import { collectStats, doctorRows, median, renderDoctor } from "./stats.js";
import { drawPlot, showPlotPng } from "./plot.js";
import { TextLog, buildDom } from "./dom.js";
import { LatencyProbe } from "./latency_probe.js";
import { MediaFilePlayer, fillDeviceSelect, listDevices, mediaConstraints, readPermissions } from "./media.js";
import { SESSION_GONE, describeConnectError, describeSocketClose, friendlyMediaError, preflightProblem } from "./errors.js";

const STATS_INTERVAL_MS = 1000;
const PING_INTERVAL_MS = 1000;
// A browser with any network gathers its host candidates within milliseconds; none this long after
// setLocalDescription means it has no network but loopback, which Chrome never offers to WebRTC.
const NO_CANDIDATE_MS = 1500;
const NO_NETWORK_REASON = "this browser offers WebRTC no network address (only loopback here: Chrome never " +
  "gathers 127.0.0.1 unless started with --allow-loopback-in-peer-connection)";

/** One widget view = one connection: opens the media, signals, connects over WebRTC (or falls back to the
 *  WebSocket media link), and shows the results, errors and stats. */
export class StreamView {
  constructor(model, el) {
    this.model = model;
    this.ui = buildDom(el);
    this.text = new TextLog(this.ui.text);
    this.mediaFile = new MediaFilePlayer(this.ui.media);
    this.host = detectHost();
    this.cfg = pageConfig();
    this.webrtc = null;       // WebRtcLink while WebRTC is tried or carries the media
    this.rpc = null;
    this.stream = null;
    this.peerId = "browser-" + Math.random().toString(36).slice(2, 10);
    this.timers = [];
    this.probe = new LatencyProbe();
    this.lastStats = null;
    this.permission = {};
    this.devices = { audioinput: [], videoinput: [] };
    this.starting = false;
    this.disposed = false;
    this.ended = false;
    this.generation = 0;
    this.wsm = null;          // WsMediaLink while media goes over the WebSocket fallback
    this.path = null;         // "webrtc" | "websocket" once media flows
    this.pathReason = "";
    this.fallbackTimer = null;
    this._wire();
  }

  // -- ui ------------------------------------------------------------------------------------
  _wire() {
    const ui = this.ui;
    ui.start.onclick = () => this.start();
    ui.stop.onclick = () => this.stop("stopped");
    ui.mute.onclick = () => this.toggleMute();
    ui.statsBtn.onclick = () => { ui.stats.hidden = !ui.stats.hidden; this.renderStats(); };
    ui.mic.onchange = () => { if (this.webrtc || this.wsm) this.restart(); };
    ui.cam.onchange = () => { if (this.webrtc || this.wsm) this.restart(); };
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
      showPlotPng(this.ui.plotImg, buffers[0]);
    } else if (msg.kind === "text") {
      this.text.append(msg.text, msg.final !== false, "rm-kernel");
    }
  }

  async fillDevices() {
    try {
      this.devices = await listDevices();
      fillDeviceSelect(this.ui.mic, this.devices.audioinput);
      fillDeviceSelect(this.ui.cam, this.devices.videoinput);
    } catch (e) { /* enumerateDevices is best effort */ }
  }

  async queryPermissions() {
    await readPermissions(this.permission);
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
    if (this.starting || this.webrtc || this.wsm || this.disposed) return;
    const problem = preflightProblem(this.model, this.host, this.transportSetting());
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
      const msg = e && e.friendly ? e.message : (e && e.media ? friendlyMediaError(e.cause, this.host) : describeConnectError(e));
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

  async openMedia() {
    const { audio, video } = mediaConstraints(this.model, this.ui.mic.value, this.ui.cam.value);
    const bench = benchHook();  // BENCH HOOK
    const file = this.model.get("media_file");
    if (file && file.byteLength && !(bench && bench.stream)) {
      this.stream = await this.mediaFile.play(file, this.model.get("media_file_type") || "");
      return;
    }
    try {
      this.stream = bench && bench.stream ? await bench.stream() : await navigator.mediaDevices.getUserMedia({ audio, video });
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
    await this.rpc.call(METHODS.PEER_ANNOUNCE, { peer_id: this.peerId, capabilities: ["audio", "video", "data"],
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
    return this.webrtc ? this.webrtc.iceHint() : "";
  }

  async connectWebRtc(gen) {
    const loopback = this.model.get("loopback_only");
    const policy = this.model.get("ice_transport_policy") === "relay" ? "relay" : "all";
    const iceServers = loopback ? [] : await this.freshIceServers();
    if (gen !== this.generation) return;
    const link = new WebRtcLink(this.rpc, this.ui, { peerId: this.peerId, iceServers, policy,
      loopbackOnly: () => this.model.get("loopback_only"), jitterBufferMs: () => this.model.get("jitter_buffer_ms"),
      onData: (raw) => this.onData(raw), onDataOpen: () => this.onDataOpen(), onState: (state) => this.onPcState(state) });
    this.webrtc = link;
    this.audioTransport = resolveAudioTransport(this.model.get("audio_transport"), loopback, window.location.hostname);
    const audioOnDc = this.audioTransport === "datachannel" && this.stream.getAudioTracks().length > 0;
    link.addMedia(this.stream, audioOnDc ? this.dcAudioOptions() : null);
    if (link.dca) this.watchDcAudio(link, link.dca, gen);
    const isCurrent = () => gen === this.generation && this.webrtc === link;
    await link.createOffer();
    if (policy === "all") this.timers.push(setTimeout(() => this.checkNoCandidates(gen, link), NO_CANDIDATE_MS));
    await link.exchange(isCurrent);
    if (this.webrtc === link && !this.path) this.setStatus("answer applied, ICE checking…", "connecting");
  }

  dcAudioOptions() {
    const bench = benchHook();  // BENCH HOOK: the bench's AudioContext, and its onset detector on our playout
    return { marginMs: +this.model.get("jitter_buffer_ms") || 0,
      ctx: bench && bench.audioContext ? bench.audioContext() : null,
      onPlayout: bench && bench.onPlayout ? (node) => bench.onPlayout(node) : null };
  }

  // Data-channel audio needs its worklets and a running AudioContext (autoplay policy); a failure ends the stream.
  watchDcAudio(link, dca, gen) {
    const current = () => gen === this.generation && this.webrtc === link && link.dca === dca;
    dca.ready.then(() => {
      if (current()) this.resumeOnClick(dca.ctx, () => this.webrtc === link && link.dca === dca);
    }).catch((e) => {
      if (current()) this.fail("Could not start data-channel audio: " + (e && e.message ? e.message : String(e)));
    });
  }

  // No local candidate at all: WebRTC cannot connect, so "auto" moves to the WebSocket now instead of after
  // webrtc_timeout_s, and "webrtc" says why it waits.
  checkNoCandidates(gen, link) {
    if (gen !== this.generation || this.webrtc !== link || this.path || link.localCandidates) return;
    if (this.transportSetting() === "auto") this.fallBack(gen, NO_NETWORK_REASON);
    else this.setStatus("WebRTC cannot connect: " + NO_NETWORK_REASON, "connecting");
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
    const link = this.webrtc;
    this.webrtc = null; this.lastStats = null;
    if (link) link.abandon();
    try {
      await this.startWsMedia(gen, reason);
    } catch (e) {
      if (gen === this.generation) this.fail("WebRTC did not connect (" + reason + ") and the WebSocket media fallback failed: " +
        (e && e.rpc ? describeConnectError(e) : (e && e.message) || String(e)));
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

  onNotify(method, params) {
    if (method === NOTIFICATIONS.MEDIA_OUTPUT) { this.onOutput(params); return; }
    if (this.wsm && method.startsWith("peer.")) return;  // the abandoned WebRTC attempt
    if (method === NOTIFICATIONS.PEER_ICE_CANDIDATE) {
      if (this.webrtc) this.webrtc.onRemoteCandidate(params);
    } else if (method === NOTIFICATIONS.PEER_STATE_CHANGE) {
      this.serverState = params.connection_state;
      if (params.connection_state === "failed" && this.transportSetting() === "auto" && !this.path) {
        this.fallBack(this.generation, "the kernel's peer reported ICE failure" + this.iceHint());
        return;
      }
      if (params.connection_state === "failed") this.fail("The kernel's peer reported ICE failure: no network path between this browser and the kernel.");
      if (params.connection_state === "closed" && this.webrtc) this.fail("The kernel closed the connection.");
    } else if (method === UNSOLICITED_ERROR) {
      if (params.code === ERROR_CODES.SESSION_UNAVAILABLE) this.fail(SESSION_GONE);
      else this.fail("Signaling error " + params.code + ": " + params.message);
    }
  }

  onSocketClosed(ev) {
    if (this.ended || this.disposed) return;
    this.fail(describeSocketClose(ev, !!this.webrtc && this.webrtc.pc.connectionState === "connected"));
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
    if (!this.wsm && (!this.webrtc || !this.webrtc.dataOpen)) return;
    this.sendData(this.probe.ping(this.peerId));
  }

  // One data-channel style message to the pipeline, over whichever path is in use.
  sendData(text) {
    if (this.wsm) this.wsm.sendMessage(text);
    else if (this.webrtc && this.webrtc.dataOpen) this.webrtc.dc.send(text);
  }

  onData(raw) {
    if (typeof raw !== "string") return;  // binary outputs are not shown
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { this.text.append(raw); return; }
    this.onOutput(msg);
  }

  // One pipeline output: data-channel JSON (WebRTC) or `media.output` params (WebSocket media).
  onOutput(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "text") {
      const partial = msg.channel === "partial" || msg.final === false;
      this.text.append(msg.text, !partial);
    } else if (msg.type === "json") {
      const v = msg.value;
      if (v && v.kind === "rm.ping") {
        if (this.probe.answered(v, this.peerId)) this.renderStats();
      } else if (v && typeof v.text === "string") {
        this.text.append(v.text, v.final !== false && v.is_final !== false);
      }
    } else if (msg.type === "error") {
      this.text.append("⚠ " + (msg.node ? msg.node + ": " : "") + msg.message, true, "rm-line-error");
    } else if (msg.type === "metrics") {
      this.kernelMetrics = msg.value;
    }
  }

  async pollStats() {
    if (this.webrtc) {
      try { this.lastStats = await collectStats(this.webrtc.pc); } catch (e) { return; }
      // the kernel side of the return path: what its latency policy trimmed, and the silence it sent
      if (this.rpc && this.webrtc.pc.connectionState === "connected") {
        try { this.kernelStats = await this.rpc.call(METHODS.MEDIA_STATS, {}, 3000); } catch (e) { /* not yet offered */ }
      }
    } else if (!this.wsm) return;
    this.renderStats();
    const latency = median(this.probe.rtts);
    this.model.set("browser_stats", { ...(this.lastStats || {}), path: this.path, path_reason: this.pathReason,
      transport_setting: this.transportSetting(), websocket: this.wsm ? this.wsm.stats() : null,
      audio_transport: this.wsm ? "websocket" : this.audioTransport || null, dc_audio: this.webrtc && this.webrtc.dca ? this.webrtc.dca.stats() : null, e2e_rtt_ms: latency === null ? null : Math.round(latency * 10) / 10,
      pings_answered: this.probe.rtts.length, host: this.host, secure_context: window.isSecureContext,
      permission: this.permission, devices: { audioinput: this.devices.audioinput.length, videoinput: this.devices.videoinput.length } });
    this.model.save_changes();
  }

  renderStats() {
    if (this.ui.stats.hidden) return;
    renderDoctor(this.ui.stats, doctorRows({ host: this.host, secureContext: window.isSecureContext,
      permission: this.permission, devices: this.devices, path: this.path, pathReason: this.pathReason,
      transportSetting: this.transportSetting(), webrtcTimeoutS: this.model.get("webrtc_timeout_s"), pc: this.webrtc && this.webrtc.pc,
      wsm: this.wsm, rpc: this.rpc, lastStats: this.lastStats, rtts: this.probe.rtts, dca: this.webrtc && this.webrtc.dca,
      audioTransport: this.audioTransport, kernelStats: this.kernelStats, latencyProbe: this.model.get("latency_probe"),
      ended: this.ended }));
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
    const link = this.webrtc;
    if (link) link.closeDcAudio();
    if (this.path) this.reportPath(null, "");
    this.audioTransport = null;
    if (link) { link.close(); this.webrtc = null; }
    if (this.rpc) { this.rpc.close(); this.rpc = null; }
    if (this.stream) { this.stream.getTracks().forEach((t) => t.stop()); this.stream = null; }
    this.probe.reset();
    this.lastStats = null; this.kernelStats = null;
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
