// The AudioWorklet processors (their sources, loaded from Blob URLs: no build step) and how to add them once
// per AudioContext.

// AudioWorklet module, loaded from a Blob URL (no build step): mixes the input to mono and posts
// Float32 frames of `frame` samples to the main thread.
export const CAPTURE_WORKLET = `
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

// Plays returned pcm16 from a ring buffer at a small, adaptive latency. The kernel sends a continuous stream
// (silence when its pipeline has none), so a quantum that finds too little is jitter or a stall: it plays
// silence, and that much of the late audio is skipped when it arrives (the latency stays where it was);
// when such events come within 2 s of each other the margin kept in the buffer grows by one render
// quantum each time (up to 100 ms). After
// 10 calm seconds the margin shrinks by a quantum. Every half second the buffer's lowest level is checked:
// a standing backlog more than `trimAboveMs` above the margin (drift, a burst after a long stall) is
// skipped; a smaller one a quantum per half second after a calm second. Over 200 ms of silence is a gap, not
// jitter: playback starts over once the margin is buffered again.
export const PLAYOUT_WORKLET = `
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

/** Adds the worklet module `source` to `ctx`, once per context. */
export async function addWorklet(ctx, source) {
  let done = workletModules.get(ctx);
  if (!done) workletModules.set(ctx, (done = new Set()));
  if (done.has(source)) return;
  const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
  try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
  done.add(source);
}
