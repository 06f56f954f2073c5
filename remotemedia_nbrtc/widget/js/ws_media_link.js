// The WebSocket media fallback (protocol: remotemedia_nbrtc/transport/wsmedia.py): when WebRTC cannot
// connect, media travels as binary frames (frames.js) on the signaling socket itself.

import { FRAME_KINDS, METHODS } from "./protocol.js";
import { floatToPcm16, packFrame, unpackFrame, wallUs } from "./frames.js";
import { CAPTURE_WORKLET, addWorklet } from "./worklets.js";

const WS_HIGH_WATER = 256 * 1024;  // bytes the socket may hold unsent before we hold frames back
const WS_AUDIO_QUEUE_MAX = 50;      // 20 ms frames waiting for the socket (1 s); older ones are dropped, counted
const WS_AUDIO_LEAD_S = 0.04;       // returned audio starts this far ahead of the audio clock after an underrun
const WS_AUDIO_AHEAD_MAX_S = 0.5;   // returned audio queued beyond this is dropped (counted)
const WS_VIDEO_MAX_WIDTH = 320;     // "small" pictures: the fallback is for constrained networks
const WS_FRAME_MS = 20;

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
export class WsMediaLink {
  constructor(rpc, stream, ui, opts) {
    this.rpc = rpc;
    this.stream = stream;
    this.ui = ui;
    this.opts = opts;  // {audioCodec: auto|opus|pcm16, pcmRate, video, videoCodec, maxFps, onOutput}
    this.accepted = null;
    this.ctx = null;
    this.worklet = null;
    this.encoder = null;
    this.seq = { [FRAME_KINDS.audio]: 0, [FRAME_KINDS.video]: 0, [FRAME_KINDS.data]: 0 };
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
    const result = await this.rpc.call(METHODS.MEDIA_OPEN, params);
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
    this.audioQ.push(packFrame(FRAME_KINDS.audio, this.seq[FRAME_KINDS.audio]++, ts, payload));
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
      this.videoSlot = packFrame(FRAME_KINDS.video, this.seq[FRAME_KINDS.video]++, ts, buf);
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
    if (this.rpc) this.rpc.notify(METHODS.MEDIA_SEND, { message: text });
  }

  // -- receiving -------------------------------------------------------------------------------
  onBinary(buf) {
    const f = unpackFrame(buf);
    if (!f || this.closed) return;
    if (f.kind === FRAME_KINDS.audio) this.playAudio(f);
    else if (f.kind === FRAME_KINDS.video) this.showVideo(f);
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
    try { this.kernel = await this.rpc.call(METHODS.MEDIA_STATS, {}, 5000); } catch (e) { /* closing */ }
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
