// Low-latency audio on a data channel (audio_transport="datachannel"; kernel side: transport/dcaudio.py).

import { DC_AUDIO_LABEL, FRAME_KINDS } from "./protocol.js";
import { floatToPcm16, packFrame, unpackFrame, wallUs } from "./frames.js";
import { CAPTURE_WORKLET, PLAYOUT_WORKLET, addWorklet } from "./worklets.js";

// what the kernel accepts (transport/dcaudio.py)
const DC_MIN_RATE = 16000;
const DC_MAX_RATE = 48000;
const DC_AUDIO_HIGH_WATER = 64 * 1024;  // bytes the channel may hold unsent; beyond it captured frames are dropped, counted
const DC_PLAYOUT_TRIM_ABOVE_MS = 15;    // a standing backlog this far above the margin for 1 s is skipped (counted);
                                        // above the kernel's 10 ms pacing lead, so paced TTS is never cut

/** The browser side of data-channel audio: captured chunks -> pcm16 -> channel; channel -> playout worklet.
 *  Capture reads the track's own 10 ms chunks with MediaStreamTrackProcessor where the browser has it (Chrome:
 *  about 10 ms sooner than through a MediaStreamAudioSourceNode, whose FIFO holds ~20 ms), else 128-sample
 *  quanta from an AudioWorklet. */
export class DcAudioLink {
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
    const frame = packFrame(FRAME_KINDS.audio, this.seq++, ts, floatToPcm16(samples));
    if (ch.bufferedAmount > DC_AUDIO_HIGH_WATER) { this.counters.send_drops++; return; }
    ch.send(frame);
    this.counters.frames_sent++;
  }

  onMessage(buf) {
    const f = unpackFrame(buf);
    if (!f || f.kind !== FRAME_KINDS.audio || !this.playout || this.closed) return;
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
