// One WebRTC attempt: the RTCPeerConnection with the media tracks (or the audio on the rm-audio data channel,
// dc_audio_link.js), the pipeline-data channel, and the offer/answer and trickle ICE over the RPC socket.

import { DATA_CHANNEL_LABEL, METHODS, SERVER_PEER_ID } from "./protocol.js";
import { benchHook, keepCandidate } from "./config.js";
import { DcAudioLink } from "./dc_audio_link.js";

export class WebRtcLink {
  /** `opts`: {peerId, iceServers, policy ("all" | "relay"), and callbacks: loopbackOnly(), jitterBufferMs() (null: the browser's default), onData(raw), onDataOpen(),
   *  onState(connectionState)}. The settings are read when used, as the widget's traits may change. */
  constructor(rpc, ui, opts) {
    this.rpc = rpc;
    this.ui = ui;
    this.opts = opts;
    this.pendingLocal = [];   // our candidates until the offer is sent
    this.pendingRemote = [];  // the kernel's candidates until its answer is applied
    this.offerSent = false;
    this.answerApplied = false;
    this.localCandidates = 0;
    this.dc = null;
    this.dca = null;          // DcAudioLink while audio goes over the rm-audio data channel
    this.pc = new RTCPeerConnection({ iceServers: opts.iceServers, iceTransportPolicy: opts.policy });
  }

  /** Adds `stream`'s tracks and the pipeline-data channel; with `dcAudio` (DcAudioLink options) the audio goes
   *  on the rm-audio data channel instead of a track. */
  addMedia(stream, dcAudio) {
    const pc = this.pc, opts = this.opts;
    for (const track of stream.getTracks()) {
      if (!(dcAudio && track.kind === "audio")) pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
    }
    const dc = pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: true });
    this.dc = dc;
    // audio both ways on the rm-audio data channel, created before the offer (its worklets start meanwhile)
    if (dcAudio) this.dca = new DcAudioLink(pc, stream, dcAudio);
    dc.onmessage = (ev) => opts.onData(ev.data);
    dc.onopen = () => opts.onDataOpen();
    pc.onicecandidate = (ev) => this.onLocalCandidate(ev.candidate);
    pc.ontrack = (ev) => this.onRemoteTrack(ev);
    pc.onconnectionstatechange = () => opts.onState(pc.connectionState);
    const bench = benchHook();  // BENCH HOOK
    if (bench && bench.onPeer) bench.onPeer(pc, dc);
  }

  async createOffer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
  }

  /** Sends the offer and applies the kernel's answer; stops early once `isCurrent()` is false. */
  async exchange(isCurrent) {
    const pc = this.pc;
    const answerP = this.rpc.call(METHODS.PEER_OFFER, { from: this.opts.peerId, to: SERVER_PEER_ID, sdp: pc.localDescription.sdp });
    // Trickle: our candidates go right behind the offer (the server queues them until it has applied it),
    // so its ICE checks can start as soon as it answers instead of one signaling hop later.
    this.offerSent = true;
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
    const answer = await answerP;
    if (!isCurrent()) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.answerApplied = true;
    this.applyJitterTarget();
    for (const c of this.pendingRemote.splice(0)) await this.addRemoteCandidate(c);
    for (const c of this.pendingLocal.splice(0)) this.sendCandidate(c);
  }

  onLocalCandidate(candidate) {
    const c = candidate
      ? { candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_m_line_index: candidate.sdpMLineIndex }
      : { candidate: "", sdp_mid: null, sdp_m_line_index: null };
    if (candidate && !keepCandidate(candidate.candidate, this.opts.loopbackOnly())) return;
    if (candidate) this.localCandidates++;
    if (!this.offerSent) this.pendingLocal.push(c);
    else this.sendCandidate(c);
  }

  sendCandidate(c) {
    if (!this.rpc) return;
    this.rpc.call(METHODS.PEER_ICE_CANDIDATE, { from: this.opts.peerId, to: SERVER_PEER_ID, ...c }).catch(() => {});
  }

  /** A `peer.ice_candidate` from the kernel: applied once its answer is, queued until then. */
  onRemoteCandidate(params) {
    if (!this.answerApplied) this.pendingRemote.push(params);
    else this.addRemoteCandidate(params);
  }

  async addRemoteCandidate(p) {
    try {
      if (!p.candidate) { await this.pc.addIceCandidate(null); return; }
      if (!keepCandidate(p.candidate, this.opts.loopbackOnly())) return;
      await this.pc.addIceCandidate({ candidate: p.candidate, sdpMid: p.sdp_mid ?? p.sdpMid ?? null,
        sdpMLineIndex: p.sdp_m_line_index ?? p.sdpMLineIndex ?? 0 });
    } catch (e) { /* a bad or late candidate is not fatal */ }
  }

  // jitterBufferTarget (ms) on every receiver: how long the browser holds received audio/video before
  // playing it (null: the browser's adaptive default). Set from Python (`jitter_buffer_ms`).
  applyJitterTarget() {
    const ms = this.opts.jitterBufferMs();
    if (ms === null || ms === undefined) return;
    for (const r of this.pc.getReceivers()) {
      if ("jitterBufferTarget" in r) try { r.jitterBufferTarget = ms; } catch (e) { /* out of range */ }
    }
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

  /** True while the pipeline-data channel is open. */
  get dataOpen() { return !!this.dc && this.dc.readyState === "open"; }

  // Why ICE did not get anywhere, for the fallback reason shown in the doctor panel.
  iceHint() {
    let hint = " (ICE " + this.pc.iceConnectionState + ", " + this.localCandidates + " usable local candidate(s)";
    if (!this.localCandidates) hint += ": UDP blocked, or relay-only without a reachable TURN server, or no network but loopback";
    return hint + ")";
  }

  closeDcAudio() {
    if (this.dca) { this.dca.close(); this.dca = null; }
  }

  /** Closes the channels and the peer connection (the view is ending). */
  close() {
    this.closeDcAudio();
    if (this.dc) { try { this.dc.close(); } catch (e) {} }
    try { this.pc.close(); } catch (e) {}
  }

  /** Drops this attempt for the WebSocket fallback: no more events from it, then closed. */
  abandon() {
    this.closeDcAudio();
    const dc = this.dc, pc = this.pc;
    if (dc) { dc.onmessage = null; dc.onopen = null; try { dc.close(); } catch (e) {} }
    pc.onconnectionstatechange = null; pc.onicecandidate = null; pc.ontrack = null;
    try { pc.close(); } catch (e) {}
  }
}
