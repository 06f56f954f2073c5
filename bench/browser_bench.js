// Page side of bench/browser_latency.py, injected into every page (Playwright add_init_script) as
// window.__rmBench. The widget picks it up through its BENCH HOOK (stream(), onPeer()); the baseline page
// calls the same functions itself. Everything is timed on this page: bursts on the AudioContext clock,
// messages with performance.now(), and the server's wall clock aligned by data-channel pings.
(() => {
  const WORKLET = `
    class RmOnset extends AudioWorkletProcessor {
      constructor(o) {
        super();
        this.thr = o.processorOptions.threshold;
        this.quietNeeded = Math.round(0.1 * sampleRate);  // re-arm after 100 ms below the threshold
        this.quiet = 0;
        this.armed = false;
      }
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        if (!ch) return true;
        for (let i = 0; i < ch.length; i++) {
          if (Math.abs(ch[i]) > this.thr) {
            if (this.armed) { this.port.postMessage(currentTime + i / sampleRate); this.armed = false; }
            this.quiet = 0;
          } else if (++this.quiet >= this.quietNeeded) this.armed = true;
        }
        return true;
      }
    }
    registerProcessor("rm-onset", RmOnset);`;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const B = {
    ctx: null,
    dest: null,
    tone: null,
    pc: null,
    dc: null,
    marks: {},        // performance.now() of connection milestones (per connection)
    levels: [],       // [recv perf ms, rms_dbfs, arrival_wall_us|null, ts_us]
    firstWall: null,  // ours: [first frame received, first frame in the pipeline node], server wall us
    pings: new Map(),
    clock: [],        // [t0 perf ms, t1 perf ms, server ts_us]
    onsets: [],       // AudioContext seconds of echoed onsets
    bursts: [],       // AudioContext seconds of scheduled onsets
    map: [],          // [ctx s, perf ms] polled pairs
    echoThreshold: 0.1,

    async stream() {
      if (!this.ctx) {
        this.ctx = new AudioContext({ latencyHint: "interactive", sampleRate: 48000 });
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
        await this.ctx.audioWorklet.addModule(url);
        const n = Math.round(0.02 * this.ctx.sampleRate);
        this.tone = this.ctx.createBuffer(1, n, this.ctx.sampleRate);
        const d = this.tone.getChannelData(0);
        for (let i = 0; i < n; i++) d[i] = 0.5 * Math.sin((2 * Math.PI * 880 * i) / this.ctx.sampleRate);
      }
      await this.ctx.resume();
      this.dest = this.ctx.createMediaStreamDestination();
      this.dest.channelCount = 1;
      // Chrome's destination track delivers nothing to WebRTC while no source feeds it: keep one running
      const keep = this.ctx.createConstantSource();
      keep.offset.value = 0;
      keep.connect(this.dest);
      keep.start();
      return this.dest.stream;
    },

    onPeer(pc, dc) {
      this.pc = pc;
      this.dc = dc;
      this.marks = { create_offer: performance.now() };
      if (this.ptime) {  // diagnostic (--opus-ptime): ask the browser for shorter Opus frames
        const set = pc.setRemoteDescription.bind(pc);
        const ptime = this.ptime;
        pc.setRemoteDescription = (d) => set({ type: d.type, sdp: d.sdp.replace(/(m=audio[\s\S]*?\r\n)(a=)/, `$1a=ptime:${ptime}\r\n$2`) });
      }
      this.firstWall = null;
      dc.addEventListener("message", (ev) => { if (dc === this.dc) this.onMessage(ev.data, performance.now()); });
      dc.addEventListener("open", () => { this.marks.dc_open = performance.now(); });
      pc.addEventListener("track", (ev) => this.onTrack(ev));
      pc.addEventListener("connectionstatechange", () => {
        if (!(pc.connectionState in this.marks)) this.marks[pc.connectionState] = performance.now();
      });
      pc.addEventListener("signalingstatechange", () => {
        if (pc.signalingState === "stable" && !this.marks.answer) this.marks.answer = performance.now();
      });
    },

    onMessage(raw, t) {
      if (typeof raw !== "string") return;
      let m;
      try { m = JSON.parse(raw); } catch (e) { return; }
      const v = m && m.value;
      if (!v || m.type !== "json") return;
      if (v.kind === "level") {
        if (this.marks.first_result === undefined) this.marks.first_result = t;
        if (v.first_arrival_wall_us && this.firstWall === null) this.firstWall = [v.first_arrival_wall_us, v.first_proc_wall_us];
        this.levels.push([t, v.rms_dbfs, v.arrival_wall_us || null, m.ts_us]);
      } else if (v.kind === "rm.ping" && v.peer === "bench" && this.pings.has(v.id)) {
        this.clock.push([this.pings.get(v.id), t, m.ts_us]);
        this.pings.delete(v.id);
      }
    },

    onTrack(ev) {
      if (ev.track.kind !== "audio" || !this.ctx) return;
      const src = this.ctx.createMediaStreamSource(new MediaStream([ev.track]));
      this.detectOnsets(src);
    },

    // audio_transport="datachannel": the widget plays returned audio from its own worklet in our context
    audioContext() { return this.ctx; },
    onPlayout(node) { this.detectOnsets(node); },

    detectOnsets(src) {
      const node = new AudioWorkletNode(this.ctx, "rm-onset", { processorOptions: { threshold: this.echoThreshold } });
      node.port.onmessage = (e) => this.onsets.push(e.data);
      const mute = this.ctx.createGain();
      mute.gain.value = 0;
      src.connect(node);
      node.connect(mute);
      mute.connect(this.ctx.destination);  // pulls the worklet
      this.trackNodes = [src, node, mute];
    },

    async syncClock(n = 25, gapMs = 20) {
      for (let i = 0; i < n; i++) {
        if (!this.dc || this.dc.readyState !== "open") break;
        const id = Math.floor(Math.random() * 1e9);
        this.pings.set(id, performance.now());
        this.dc.send(JSON.stringify({ type: "json", value: { kind: "rm.ping", id, peer: "bench" } }));
        await sleep(gapMs);
      }
      await sleep(200);
      this.pings.clear();
    },

    // n bursts, one every periodMs, each at an exact AudioContext time; between them, currentTime is polled
    // against performance.now() (the smallest difference maps a context time to the moment it was rendered).
    async runBursts(n, periodMs) {
      const ctx = this.ctx;
      const grid = Math.ceil((ctx.currentTime + 0.3) * 100) / 100;
      for (let i = 0; i < n; i++) {
        // a random 0-20 ms phase per burst: the wait for the Opus frame to fill is then sampled, not fixed
        const T = grid + (i * periodMs) / 1000 + Math.random() * 0.02;
        const s = ctx.createBufferSource();
        s.buffer = this.tone;
        s.connect(this.dest);
        s.start(T);
        this.bursts.push(T);
        const until = grid + ((i + 1) * periodMs) / 1000 - 0.15;
        while (ctx.currentTime < until) {
          this.map.push([ctx.currentTime, performance.now()]);
          await sleep(1);
        }
      }
      await sleep(periodMs);
    },

    async receiverStats() {
      const out = {};
      if (!this.pc) return out;
      const r = this.pc.getReceivers().find((x) => x.track && x.track.kind === "audio");
      out.jitter_buffer_target = r && "jitterBufferTarget" in r ? r.jitterBufferTarget : "unsupported";
      (await this.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") {
          Object.assign(out, { packets: s.packetsReceived, lost: s.packetsLost, jitter_s: s.jitter,
            jb_delay_s: s.jitterBufferDelay, jb_target_s: s.jitterBufferTargetDelay, jb_min_s: s.jitterBufferMinimumDelay,
            jb_emitted: s.jitterBufferEmittedCount, concealed: s.concealedSamples, total_samples: s.totalSamplesReceived,
            playout_id: s.playoutId });
        }
        if (s.type === "media-playout") Object.assign(out, { playout_delay_s: s.totalPlayoutDelay, playout_samples: s.totalSamplesCount });
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") out.rtt_s = s.currentRoundTripTime;
      });
      return out;
    },

    take() {
      const out = { marks: this.marks, levels: this.levels, clock: this.clock, onsets: this.onsets, bursts: this.bursts,
        map: this.map, first_wall_us: this.firstWall, sample_rate: this.ctx && this.ctx.sampleRate,
        base_latency: this.ctx && this.ctx.baseLatency, output_latency: this.ctx && this.ctx.outputLatency };
      this.levels = []; this.clock = []; this.onsets = []; this.bursts = []; this.map = [];
      return out;
    },
  };
  window.__rmBench = B;
})();
