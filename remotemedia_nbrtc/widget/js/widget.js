// remotemedia_nbrtc stream widget: browser mic/camera -> WebRTC -> pipeline in the kernel -> results.
// One ESM file, no build step. Signaling is RemoteMedia's JSON-RPC 2.0 over the server extension's
// WebSocket (<base_url>remotemedia/ws/<session_id>): peer.announce, peer.offer answered in the result,
// trickle ICE both ways, peer.state_change notifications.

import { ERROR_CODES, FRAME_KINDS, FRAME_HEADER_BYTES, SERVER_PEER_ID, DC_AUDIO_LABEL } from "./protocol.js";
import { authHeaders, baseUrl, benchHook, detectHost, keepCandidate, pageConfig, resolveAudioTransport, signalingUrl } from "./config.js";
import { RpcSocket } from "./rpc_socket.js";

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

// ---------------------------------------------------------------------------------------------
// WebSocket media fallback (protocol: remotemedia_nbrtc/transport/wsmedia.py): when WebRTC cannot
// connect, media travels as binary frames on the signaling socket itself, each with a 13-byte header.
// ---------------------------------------------------------------------------------------------

const KIND_AUDIO = FRAME_KINDS.audio, KIND_VIDEO = FRAME_KINDS.video, KIND_DATA = FRAME_KINDS.data;
const HEADER_BYTES = FRAME_HEADER_BYTES;
const WS_HIGH_WATER = 256 * 1024;  // bytes the socket may hold unsent before we hold frames back
const WS_AUDIO_QUEUE_MAX = 50;      // 20 ms frames waiting for the socket (1 s); older ones are dropped, counted
const WS_AUDIO_LEAD_S = 0.04;       // returned audio starts this far ahead of the audio clock after an underrun
const WS_AUDIO_AHEAD_MAX_S = 0.5;   // returned audio queued beyond this is dropped (counted)
const WS_VIDEO_MAX_WIDTH = 320;     // "small" pictures: the fallback is for constrained networks
const WS_FRAME_MS = 20;

export function wallUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** One binary frame: kind (u8), sequence (u32 LE), timestamp in µs (u64 LE), payload. */
export function packFrame(kind, seq, tsUs, payload) {
  const bytes = payload instanceof ArrayBuffer ? new Uint8Array(payload)
    : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint8Array(HEADER_BYTES + bytes.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, kind);
  dv.setUint32(1, seq >>> 0, true);
  dv.setBigUint64(5, BigInt(Math.max(0, Math.round(tsUs))), true);
  out.set(bytes, HEADER_BYTES);
  return out.buffer;
}

export function unpackFrame(buf) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength < HEADER_BYTES) return null;
  const dv = new DataView(buf);
  return { kind: dv.getUint8(0), seq: dv.getUint32(1, true), ts_us: Number(dv.getBigUint64(5, true)),
    payload: new Uint8Array(buf, HEADER_BYTES) };
}

// AudioWorklet module, loaded from a Blob URL (no build step): mixes the input to mono and posts
// Float32 frames of `frame` samples to the main thread.
const CAPTURE_WORKLET = `
class RmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frame = options.processorOptions.frame;
    this.buf = new Float32Array(this.frame);
    this.fill = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length, chs = input.length;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let c = 0; c < chs; c++) v += input[c][i];
        this.buf[this.fill++] = v / chs;
        if (this.fill === this.frame) {
          this.port.postMessage(this.buf, [this.buf.buffer]);
          this.buf = new Float32Array(this.frame);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}
try { registerProcessor("rm-capture", RmCapture); } catch (e) { /* already registered in this context */ }
`;

async function opusSupported(rate) {
  if (typeof AudioEncoder === "undefined") return false;
  try {
    const r = await AudioEncoder.isConfigSupported({ codec: "opus", sampleRate: rate, numberOfChannels: 1, bitrate: 48000 });
    return !!r.supported;
  } catch (e) {
    return false;
  }
}

/** The browser side of one WebSocket media connection: capture, encode, send, receive, play, show. */
class WsMediaLink {
  constructor(rpc, stream, ui, opts) {
    this.rpc = rpc;
    this.stream = stream;
    this.ui = ui;
    this.opts = opts;  // {audioCodec: auto|opus|pcm16, pcmRate, video, videoCodec, maxFps, onOutput}
    this.accepted = null;
    this.ctx = null;
    this.worklet = null;
    this.encoder = null;
    this.seq = { [KIND_AUDIO]: 0, [KIND_VIDEO]: 0, [KIND_DATA]: 0 };
    this.audioQ = [];
    this.videoSlot = null;
    this.encodingVideo = false;
    this.flushTimer = null;
    this.timers = [];
    this.playhead = 0;
    this.outDest = null;
    this.pendingVideo = null;
    this.decodingVideo = false;
    this.kernel = null;
    this.closed = false;
    this.counters = { audio_frames_sent: 0, audio_drops: 0, video_frames_sent: 0, video_drops: 0,
      video_skipped: 0, bytes_sent: 0, held_back: 0, encode_errors: 0, audio_frames_received: 0,
      audio_out_drops: 0, video_frames_received: 0, video_out_drops: 0, data_frames_received: 0 };
  }

  get ws() { return this.rpc && this.rpc.ws; }

  async open() {
    const o = this.opts;
    const hasAudio = this.stream.getAudioTracks().length > 0;
    const hasVideo = o.video && this.stream.getVideoTracks().length > 0;
    let codec = o.audioCodec || "auto";
    if (codec !== "pcm16") codec = (await opusSupported(48000)) ? "opus" : "pcm16";
    if (o.audioCodec === "opus" && codec !== "opus") throw new Error("this browser cannot encode Opus (no WebCodecs AudioEncoder)");
    const rate = codec === "opus" ? 48000 : Math.min(48000, Math.max(16000, o.pcmRate || 48000));
    this.ctx = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    if (this.ctx.sampleRate !== rate) throw new Error("the browser would not run audio at " + rate + " Hz");
    const params = { receive_audio: { sample_rate: 24000 }, receive_video: hasVideo ? { max_fps: o.maxFps } : false };
    if (hasAudio) params.audio = { codec, sample_rate: rate, channels: 1 };
    if (hasVideo) params.video = { codec: o.videoCodec, max_fps: o.maxFps };
    const result = await this.rpc.call("media.open", params);
    this.accepted = result.accepted || {};
    this.outDest = this.ctx.createMediaStreamDestination();
    this.ui.audioOut.srcObject = this.outDest.stream;
    this.ui.audioOut.play().catch(() => { /* autoplay needs a click: Start counts */ });
    if (hasAudio) await this.startAudio(codec, rate);
    if (hasVideo) this.startVideo(this.accepted.video.max_fps, this.accepted.video.codec);
    this.timers.push(setInterval(() => this.pollKernel(), 1000));
  }

  // -- sending ---------------------------------------------------------------------------------
  async startAudio(codec, rate) {
    await addWorklet(this.ctx, CAPTURE_WORKLET);
    if (this.closed) return;
    const frame = Math.round(rate * WS_FRAME_MS / 1000);
    if (codec === "opus") {
      this.encoder = new AudioEncoder({
        output: (chunk) => {
          const b = new Uint8Array(chunk.byteLength);
          chunk.copyTo(b);
          this.queueAudio(b, chunk.timestamp);
        },
        error: () => { this.counters.encode_errors++; },
      });
      this.encoder.configure({ codec: "opus", sampleRate: rate, numberOfChannels: 1, bitrate: 48000,
        opus: { frameDuration: WS_FRAME_MS * 1000 } });
    }
    const src = this.ctx.createMediaStreamSource(new MediaStream(this.stream.getAudioTracks()));
    const node = new AudioWorkletNode(this.ctx, "rm-capture", { numberOfInputs: 1, numberOfOutputs: 0,
      channelCount: 1, channelCountMode: "explicit", processorOptions: { frame } });
    node.port.onmessage = (ev) => this.onCapture(ev.data, rate);
    src.connect(node);
    this.source = src;
    this.worklet = node;
  }

  onCapture(samples, rate) {
    if (this.closed) return;
    const ts = wallUs() - Math.round(samples.length * 1e6 / rate);  // when the frame's first sample was heard
    if (this.encoder) {
      if (this.encoder.state !== "configured") return;
      if (this.encoder.encodeQueueSize > 10) { this.counters.audio_drops++; return; }
      const data = new AudioData({ format: "f32", sampleRate: rate, numberOfFrames: samples.length,
        numberOfChannels: 1, timestamp: ts, data: samples });
      this.encoder.encode(data);
      data.close();
      return;
    }
    this.queueAudio(floatToPcm16(samples), ts);
  }

  queueAudio(payload, ts) {
    if (this.closed) return;
    this.audioQ.push(packFrame(KIND_AUDIO, this.seq[KIND_AUDIO]++, ts, payload));
    while (this.audioQ.length > WS_AUDIO_QUEUE_MAX) { this.audioQ.shift(); this.counters.audio_drops++; }
    this.flush();
  }

  startVideo(maxFps, codec) {
    this.canvas = document.createElement("canvas");
    this.mime = codec === "webp" ? "image/webp" : "image/jpeg";
    this.timers.push(setInterval(() => this.captureVideo(), 1000 / maxFps));
  }

  captureVideo() {
    const v = this.ui.local, ws = this.ws;
    if (this.closed || !v.videoWidth || !ws) return;
    if (this.encodingVideo || ws.bufferedAmount > WS_HIGH_WATER) { this.counters.video_skipped++; return; }
    const scale = Math.min(1, WS_VIDEO_MAX_WIDTH / v.videoWidth);
    const w = Math.max(2, 2 * Math.round(v.videoWidth * scale / 2)), hh = Math.max(2, 2 * Math.round(v.videoHeight * scale / 2));
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== hh) this.canvas.height = hh;
    this.canvas.getContext("2d").drawImage(v, 0, 0, w, hh);
    const ts = wallUs();
    this.encodingVideo = true;
    this.canvas.toBlob(async (blob) => {
      this.encodingVideo = false;
      if (!blob || this.closed) return;
      const buf = await blob.arrayBuffer();
      if (this.closed) return;
      if (this.videoSlot) this.counters.video_drops++;  // keep-newest
      this.videoSlot = packFrame(KIND_VIDEO, this.seq[KIND_VIDEO]++, ts, buf);
      this.flush();
    }, this.mime, 0.7);
  }

  flush() {
    const ws = this.ws;
    if (this.closed || !ws || ws.readyState !== WebSocket.OPEN) return;
    while (this.audioQ.length || this.videoSlot) {
      if (ws.bufferedAmount > WS_HIGH_WATER) {
        this.counters.held_back++;
        if (!this.flushTimer) this.flushTimer = setTimeout(() => { this.flushTimer = null; this.flush(); }, 10);
        return;
      }
      let frame;
      if (this.audioQ.length) { frame = this.audioQ.shift(); this.counters.audio_frames_sent++; }
      else { frame = this.videoSlot; this.videoSlot = null; this.counters.video_frames_sent++; }
      ws.send(frame);
      this.counters.bytes_sent += frame.byteLength;
    }
  }

  sendMessage(text) {
    if (this.rpc) this.rpc.notify("media.send", { message: text });
  }

  // -- receiving -------------------------------------------------------------------------------
  onBinary(buf) {
    const f = unpackFrame(buf);
    if (!f || this.closed) return;
    if (f.kind === KIND_AUDIO) this.playAudio(f);
    else if (f.kind === KIND_VIDEO) this.showVideo(f);
    else this.counters.data_frames_received++;
  }

  playAudio(f) {
    const rate = (this.accepted.audio_out && this.accepted.audio_out.sample_rate) || 24000;
    const n = f.payload.byteLength >> 1;
    if (!n || !this.ctx) return;
    const dv = new DataView(f.payload.buffer, f.payload.byteOffset, n * 2);
    const buf = this.ctx.createBuffer(1, n, rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < n; i++) ch[i] = dv.getInt16(2 * i, true) / 32768;
    const now = this.ctx.currentTime;
    if (this.playhead < now + 0.005) this.playhead = now + WS_AUDIO_LEAD_S;
    if (this.playhead - now > WS_AUDIO_AHEAD_MAX_S) { this.counters.audio_out_drops++; return; }
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.outDest);
    src.start(this.playhead);
    this.playhead += buf.duration;
    this.counters.audio_frames_received++;
  }

  showVideo(f) {
    if (this.decodingVideo) {
      if (this.pendingVideo) this.counters.video_out_drops++;
      this.pendingVideo = f;
      return;
    }
    this.decodingVideo = true;
    createImageBitmap(new Blob([f.payload], { type: "image/jpeg" })).then((bmp) => {
      const c = this.ui.remoteFrame;
      if (!this.closed) {
        if (c.width !== bmp.width) c.width = bmp.width;
        if (c.height !== bmp.height) c.height = bmp.height;
        c.getContext("2d").drawImage(bmp, 0, 0);
        c.hidden = false;
        c.dataset.frames = String((+c.dataset.frames || 0) + 1);
        this.counters.video_frames_received++;
      }
      bmp.close();
    }).catch(() => { this.counters.video_out_drops++; }).finally(() => {
      this.decodingVideo = false;
      const next = this.pendingVideo;
      this.pendingVideo = null;
      if (next && !this.closed) this.showVideo(next);
    });
  }

  async pollKernel() {
    if (this.closed || !this.rpc) return;
    try { this.kernel = await this.rpc.call("media.stats", {}, 5000); } catch (e) { /* closing */ }
  }

  stats() {
    const a = this.accepted || {};
    return { ...this.counters, audio_queued: this.audioQ.length, buffered_bytes: this.ws ? this.ws.bufferedAmount : 0,
      audio_codec: a.audio ? a.audio.codec + "/" + a.audio.sample_rate : null,
      video_codec: a.video ? a.video.codec + "@" + a.video.max_fps + "fps" : null,
      audio_context: this.ctx ? this.ctx.state : null,
      kernel: this.kernel ? { audio_frames_in: this.kernel.audio_frames_in, video_frames_in: this.kernel.video_frames_in,
        seq_gaps: this.kernel.seq_gaps, audio_drops: (this.kernel.bridge || {}).audio_drops,
        video_drops: this.kernel.video_drops, audio_frames_out: this.kernel.audio_frames_out,
        video_frames_out: this.kernel.video_frames_out, json_out: this.kernel.json_out } : null };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.audioQ = [];
    this.videoSlot = null;
    if (this.worklet) { this.worklet.port.onmessage = null; try { this.worklet.disconnect(); } catch (e) {} }
    if (this.source) try { this.source.disconnect(); } catch (e) {}
    if (this.encoder && this.encoder.state !== "closed") try { this.encoder.close(); } catch (e) {}
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Low-latency audio on a data channel (audio_transport="datachannel"; kernel side: transport/dcaudio.py)
// ---------------------------------------------------------------------------------------------

const DC_MIN_RATE = 16000, DC_MAX_RATE = 48000;  // what the kernel accepts (transport/dcaudio.py)
const DC_AUDIO_HIGH_WATER = 64 * 1024;  // bytes the channel may hold unsent; beyond it captured frames are dropped, counted
const DC_PLAYOUT_TRIM_ABOVE_MS = 15;    // a standing backlog this far above the margin for 1 s is skipped (counted);
                                        // above the kernel's 10 ms pacing lead, so paced TTS is never cut

// Plays returned pcm16 from a ring buffer at a small, adaptive latency. The kernel sends a continuous stream
// (silence when its pipeline has none), so a quantum that finds too little is jitter or a stall: it plays
// silence, and that much of the late audio is skipped when it arrives (the latency stays where it was);
// when such events come within 2 s of each other the margin kept in the buffer grows by one render
// quantum each time (up to 100 ms). After
// 10 calm seconds the margin shrinks by a quantum. Every half second the buffer's lowest level is checked:
// a standing backlog more than `trimAboveMs` above the margin (drift, a burst after a long stall) is
// skipped; a smaller one a quantum per half second after a calm second. Over 200 ms of silence is a gap, not
// jitter: playback starts over once the margin is buffered again.
const PLAYOUT_WORKLET = `
class RmPlayout extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.cap = Math.round(sampleRate * o.capacityS);
    this.ring = new Float32Array(this.cap);
    this.r = 0;
    this.n = 0;
    this.floor = Math.round(sampleRate * o.marginMs / 1000);
    this.margin = this.floor;
    this.maxMargin = Math.round(sampleRate * 0.1);
    this.trimAbove = Math.round(sampleRate * o.trimAboveMs / 1000);
    this.maxDeficit = Math.round(sampleRate * 0.2);
    this.playing = false;
    this.dry = false;
    this.lastDry = -Infinity;
    this.deficit = 0;
    this.minLevel = Infinity;
    this.windowLeft = sampleRate / 2;
    this.calm = 0;
    this.reportLeft = sampleRate / 4;
    this.peak = 0;
    this.s = { received: 0, played: 0, underruns: 0, late: 0, trimmed: 0, overflow: 0 };
    this.port.onmessage = (e) => this.push(e.data);
  }
  push(pcm) {
    this.s.received += pcm.length;
    let i = 0;
    if (this.deficit > 0) {
      i = Math.min(this.deficit, pcm.length);
      this.deficit -= i;
      this.s.late += i;
    }
    for (; i < pcm.length; i++) {
      if (this.n === this.cap) { this.r = (this.r + 1) % this.cap; this.n--; this.s.overflow++; }
      this.ring[(this.r + this.n) % this.cap] = pcm[i] / 32768;
      this.n++;
    }
  }
  skip(k) {
    this.r = (this.r + k) % this.cap;
    this.n -= k;
    this.s.trimmed += k;
  }
  process(inputs, outputs) {
    const out = outputs[0][0], len = out.length;
    if (!this.playing && this.n >= len + this.margin) this.playing = true;
    if (this.playing) {
      if (this.n < this.minLevel) this.minLevel = this.n;
      const k = Math.min(len, this.n);
      for (let i = 0; i < k; i++) {
        const v = (out[i] = this.ring[(this.r + i) % this.cap]);
        if (v > this.peak) this.peak = v; else if (-v > this.peak) this.peak = -v;
      }
      this.r = (this.r + k) % this.cap;
      this.n -= k;
      this.s.played += k;
      if (k < len) {
        this.deficit += len - k;
        if (!this.dry) {
          this.dry = true;
          this.s.underruns++;
          this.calm = 0;
          if (currentFrame - this.lastDry < 2 * sampleRate) {  // repeated: the margin is too small (one-offs pass)
            const grow = Math.min(len, this.maxMargin - this.margin);
            this.margin += grow;
            this.deficit = Math.max(0, this.deficit - grow);
          }
          this.lastDry = currentFrame;
        }
        if (this.deficit > this.maxDeficit) { this.deficit = 0; this.playing = false; }
      } else this.dry = false;
    }
    if ((this.windowLeft -= len) <= 0) {
      this.windowLeft = sampleRate / 2;
      const excess = this.minLevel - len - this.margin;
      if (this.playing && excess > this.trimAbove) this.skip(excess);
      else if (this.playing && this.calm >= 2 && excess >= len) this.skip(len);
      this.minLevel = Infinity;
      if (++this.calm >= 20 && this.margin > this.floor) { this.margin = Math.max(this.floor, this.margin - len); this.calm = 0; }
    }
    if ((this.reportLeft -= len) <= 0) {
      this.reportLeft = sampleRate / 4;
      this.port.postMessage({ ...this.s, level: this.n, margin: this.margin, playing: this.playing, peak: this.peak });
      this.peak = 0;
    }
    return true;
  }
}
try { registerProcessor("rm-playout", RmPlayout); } catch (e) { /* already registered in this context */ }
`;

const workletModules = new WeakMap();  // AudioContext -> Set of module sources already added

async function addWorklet(ctx, source) {
  let done = workletModules.get(ctx);
  if (!done) workletModules.set(ctx, (done = new Set()));
  if (done.has(source)) return;
  const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
  try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
  done.add(source);
}

/** The browser side of data-channel audio: captured chunks -> pcm16 -> channel; channel -> playout worklet.
 *  Capture reads the track's own 10 ms chunks with MediaStreamTrackProcessor where the browser has it (Chrome:
 *  about 10 ms sooner than through a MediaStreamAudioSourceNode, whose FIFO holds ~20 ms), else 128-sample
 *  quanta from an AudioWorklet. */
class DcAudioLink {
  constructor(pc, stream, opts) {
    this.stream = stream;
    this.opts = opts;  // {marginMs, ctx (shared AudioContext or null), onPlayout}
    // The AudioContext runs at the device's own rate (Firefox cannot feed a mic into a context at another
    // rate); the returned audio comes at that rate. The mic goes at its track's own rate when the browser
    // can read the track's chunks (the kernel resamples), else as worklet frames at the context's rate.
    this.ctx = opts.ctx || newAudioContext();
    this.ownsCtx = !opts.ctx;
    this.outRate = this.ctx.sampleRate;
    const track = stream.getAudioTracks()[0];
    const trackRate = (track.getSettings ? track.getSettings() : {}).sampleRate;
    this.readChunks = typeof MediaStreamTrackProcessor === "function" && trackRate >= DC_MIN_RATE && trackRate <= DC_MAX_RATE;
    this.captureRate = this.readChunks ? trackRate : this.outRate;
    this.channel = pc.createDataChannel(DC_AUDIO_LABEL, { ordered: false, maxRetransmits: 0,
      protocol: "pcm16/" + this.captureRate + "/" + this.outRate });
    this.channel.binaryType = "arraybuffer";
    this.channel.onmessage = (ev) => this.onMessage(ev.data);
    this.nodes = [];
    this.playout = null;
    this.seq = 0;
    this.nextIn = null;
    this.closed = false;
    this.play = null;
    this.counters = { frames_sent: 0, send_drops: 0, frames_received: 0, lost: 0, late: 0, rate_changes: 0 };
    this.capture = null;  // "track-processor" | "worklet"
    this.reader = null;
    this.ready = this.start();
  }

  async start() {
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    await addWorklet(this.ctx, CAPTURE_WORKLET);
    await addWorklet(this.ctx, PLAYOUT_WORKLET);
    if (this.closed) return;
    if (this.readChunks) this.readTrack(this.stream.getAudioTracks()[0]);
    else this.captureWithWorklet();
    const playout = new AudioWorkletNode(this.ctx, "rm-playout", { numberOfInputs: 0, numberOfOutputs: 1,
      outputChannelCount: [1], processorOptions: { capacityS: 2, marginMs: this.opts.marginMs || 0,
        trimAboveMs: DC_PLAYOUT_TRIM_ABOVE_MS } });
    playout.port.onmessage = (ev) => { this.play = ev.data; };
    playout.connect(this.ctx.destination);
    this.playout = playout;
    this.nodes.push(playout);
    if (this.opts.onPlayout) this.opts.onPlayout(playout);
  }

  captureWithWorklet() {
    this.capture = "worklet";
    const src = this.ctx.createMediaStreamSource(new MediaStream(this.stream.getAudioTracks()));
    const capture = new AudioWorkletNode(this.ctx, "rm-capture", { numberOfInputs: 1, numberOfOutputs: 0,
      channelCount: 1, channelCountMode: "explicit", processorOptions: { frame: Math.round(this.outRate / 100) } });  // 10 ms, as a track gives
    capture.port.onmessage = (ev) => this.onCapture(ev.data);
    src.connect(capture);
    this.nodes.push(src, capture);
  }

  async readTrack(track) {
    this.capture = "track-processor";
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    this.reader = reader;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.closed) { if (value) value.close(); break; }
        if (value.sampleRate !== this.captureRate) {  // not the rate announced in the channel's protocol
          value.close();
          reader.cancel().catch(() => {});
          this.counters.rate_changes++;
          return;
        }
        const n = value.numberOfFrames, chs = value.numberOfChannels;
        const mono = new Float32Array(n);
        const plane = chs > 1 ? new Float32Array(n) : mono;
        for (let c = 0; c < chs; c++) {
          value.copyTo(plane, { planeIndex: c, format: "f32-planar" });
          if (chs > 1) for (let i = 0; i < n; i++) mono[i] += plane[i] / chs;
        }
        value.close();
        this.onCapture(mono);
      }
    } catch (e) { /* track ended or reader cancelled */ }
  }

  onCapture(samples) {
    const ch = this.channel;
    if (this.closed || ch.readyState !== "open") return;
    const ts = wallUs() - Math.round(samples.length * 1e6 / this.captureRate);
    const frame = packFrame(KIND_AUDIO, this.seq++, ts, floatToPcm16(samples));
    if (ch.bufferedAmount > DC_AUDIO_HIGH_WATER) { this.counters.send_drops++; return; }
    ch.send(frame);
    this.counters.frames_sent++;
  }

  onMessage(buf) {
    const f = unpackFrame(buf);
    if (!f || f.kind !== KIND_AUDIO || !this.playout || this.closed) return;
    if (this.nextIn !== null && f.seq !== this.nextIn) {
      const gap = (f.seq - this.nextIn) >>> 0;
      if (gap >= 0x80000000) { this.counters.late++; return; }
      this.counters.lost += gap;
    }
    this.nextIn = (f.seq + 1) >>> 0;
    this.counters.frames_received++;
    const pcm = new Int16Array(f.payload.byteLength >> 1);
    new Uint8Array(pcm.buffer).set(f.payload.subarray(0, pcm.length * 2));
    this.playout.port.postMessage(pcm, [pcm.buffer]);
  }

  stats() {
    const p = this.play || {};
    const ms = (n) => (n === undefined ? null : Math.round((n * 10000) / this.outRate) / 10);
    return { ...this.counters, channel: this.channel.readyState, rate: this.captureRate, out_rate: this.outRate,
      capture: this.capture,
      audio_context: this.ctx ? this.ctx.state : null, buffered_bytes: this.channel.bufferedAmount,
      playout: { level_ms: ms(p.level), margin_ms: ms(p.margin), underruns: p.underruns ?? 0, trimmed_ms: ms(p.trimmed),
        overflow_ms: ms(p.overflow), late_ms: ms(p.late), played_ms: ms(p.played), playing: !!p.playing, peak: p.peak ?? 0 } };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.channel.onmessage = null;
    try { this.channel.close(); } catch (e) {}
    if (this.reader) this.reader.cancel().catch(() => {});
    for (const n of this.nodes) {
      if (n.port) n.port.onmessage = null;
      try { n.disconnect(); } catch (e) {}
    }
    this.nodes = [];
    this.playout = null;
    if (this.ownsCtx && this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
  }
}

// The device's own rate if the kernel takes it (16-48 kHz), else 48 kHz.
function newAudioContext() {
  const ctx = new AudioContext({ latencyHint: "interactive" });
  if (ctx.sampleRate >= DC_MIN_RATE && ctx.sampleRate <= DC_MAX_RATE) return ctx;
  ctx.close().catch(() => {});
  return new AudioContext({ latencyHint: "interactive", sampleRate: DC_MAX_RATE });
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

function floatToPcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    pcm[i] = v < 0 ? v * 32768 : v * 32767;
  }
  return pcm;
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
