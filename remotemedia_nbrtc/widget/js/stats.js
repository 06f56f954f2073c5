// The connection's numbers: WebRTC stats from pc.getStats(), the summaries of each audio path, and the
// stats ("doctor") panel that shows why a stream does or does not work.

import { element } from "./dom.js";

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

export function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function fmt(v, unit = "") {
  return v === null || v === undefined ? "–" : String(v) + unit;
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

/** The doctor panel's [label, value] rows for one view's state `view`: {host, secureContext, permission, devices,
 *  path, pathReason, transportSetting, webrtcTimeoutS, pc, wsm, rpc, lastStats, rtts, dca, audioTransport,
 *  kernelStats, latencyProbe, ended}. */
export function doctorRows(view) {
  const s = view.lastStats || {};
  const latency = median(view.rtts);
  const rows = [
    ["host", view.host],
    ["secure context", String(view.secureContext)],
    ["permission", Object.entries(view.permission).map(([k, v]) => k + ": " + v).join(", ") || "–"],
    ["devices", view.devices.audioinput.length + " mic(s), " + view.devices.videoinput.length + " camera(s)"],
    ["path", view.path ? view.path + " (reason: " + view.pathReason + ")" : (view.pc ? "trying WebRTC…" : "–")],
    ["transport setting", view.transportSetting + (view.transportSetting === "auto" ? ", WebSocket fallback after " + (+view.webrtcTimeoutS || 5) + " s" : "")],
    ["connection", view.pc ? view.pc.connectionState : (view.wsm ? "websocket " + (view.rpc && view.rpc.ws && view.rpc.ws.readyState === WebSocket.OPEN ? "open" : "closed") : "–")],
    ["ICE local", Object.entries(s.local_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
    ["ICE remote", Object.entries(s.remote_candidates || {}).map(([k, v]) => k + "×" + v).join(" ") || "–"],
    ["selected pair", s.selected ? s.selected.local + " ⇄ " + s.selected.remote : "–"],
    ["ICE RTT", fmt(s.rtt_ms, " ms")],
    ["audio out", s.audio_out ? s.audio_out.packets + " pkts" + (s.audio_out.lost != null ? ", lost " + s.audio_out.lost : "") : "–"],
    ["audio in", s.audio_in ? s.audio_in.packets + " pkts, lost " + s.audio_in.lost + ", jitter " + fmt(s.audio_in.jitter_ms, " ms") : "–"],
    ["video in", s.video_in ? s.video_in.packets + " pkts, lost " + s.video_in.lost : "–"],
    ["audio path", view.dca ? dcAudioSummary(view.dca.stats()) : view.wsm ? "WebSocket media"
      : view.pc && view.audioTransport === "rtp" ? "RTP (Opus media tracks)" : "–"],
    ["kernel audio out", kernelAudioOutSummary(view.kernelStats)],
    ["end-to-end RTT", latency === null ? (view.latencyProbe ? (view.ended ? "–" : "measuring…") : "off") : latency.toFixed(1) + " ms (browser → kernel pipeline → browser)"],
  ];
  if (view.wsm) {
    const webrtcOnly = new Set(["ICE local", "ICE remote", "selected pair", "ICE RTT", "audio out", "audio in", "video in"]);
    for (let i = rows.length - 1; i >= 0; i--) if (webrtcOnly.has(rows[i][0])) rows.splice(i, 1);
    const w = view.wsm.stats(), k = w.kernel;
    rows.push(
      ["ws codecs", "audio " + (w.audio_codec || "–") + ", video " + (w.video_codec || "–")],
      ["ws sent", w.audio_frames_sent + " audio, " + w.video_frames_sent + " video frames, " + Math.round(w.bytes_sent / 1024) + " KiB"],
      ["ws drops", "audio " + w.audio_drops + ", video " + w.video_drops + " (replaced) + " + w.video_skipped + " (skipped); returned audio " + w.audio_out_drops],
      ["ws buffered", w.buffered_bytes + " B in the socket, " + w.audio_queued + " audio frame(s) queued"],
      ["ws received", w.audio_frames_received + " audio, " + w.video_frames_received + " video frames"],
      ["kernel in", k ? k.audio_frames_in + " audio, " + k.video_frames_in + " video frames; gaps " + k.seq_gaps + ", drops audio " + fmt(k.audio_drops) + " video " + fmt(k.video_drops) : "–"],
    );
  }
  return rows;
}

/** Shows `rows` as the panel's table (each row's label in data-key, for tests and the page probes). */
export function renderDoctor(container, rows) {
  const table = element("table", "rm-stats-table");
  for (const [k, v] of rows) {
    const tr = element("tr", "rm-stat");
    tr.dataset.key = k;
    tr.append(element("th", "", k), element("td", "", v));
    table.appendChild(tr);
  }
  container.replaceChildren(table);
}
