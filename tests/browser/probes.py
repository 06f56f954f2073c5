"""Page-side measurements (JavaScript run with ``page.evaluate``) of what the widget plays back."""

from __future__ import annotations

#: ``[cellIndex, ms, stopAboveRms] -> {found, ready_state, max_rms, max_dbfs, samples, ctx_state}``: plays the
#: widget's returned audio (``audio.rm-audio-out``) into a WebAudio AnalyserNode for up to ``ms`` (less once a
#: window is louder than ``stopAboveRms``) and reports its loudest 2048-sample window. Waits up to 10 s for the
#: returned track.
AUDIO_LEVEL_JS = """
async ([index, ms, stopAbove]) => {
  const sleep = (t) => new Promise((r) => setTimeout(r, t));
  const root = document.querySelectorAll('.jp-Notebook .jp-Cell')[index].querySelector('.rm-widget');
  const el = root && root.querySelector('audio.rm-audio-out');
  const t0 = performance.now();
  while (!(el && el.srcObject && el.srcObject.getAudioTracks().length) && performance.now() - t0 < 10000) \
await sleep(50);
  if (!(el && el.srcObject && el.srcObject.getAudioTracks().length)) return { found: false };
  const track = el.srcObject.getAudioTracks()[0];
  const ac = new AudioContext();
  await ac.resume();
  const an = ac.createAnalyser();
  an.fftSize = 2048;
  ac.createMediaStreamSource(el.srcObject).connect(an);
  const buf = new Float32Array(an.fftSize);
  let maxRms = 0, samples = 0;
  const t1 = performance.now();
  while (performance.now() - t1 < ms && !(stopAbove && maxRms > stopAbove)) {
    an.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    maxRms = Math.max(maxRms, Math.sqrt(s / buf.length));
    samples++;
    await sleep(40);
  }
  const ctxState = ac.state;
  await ac.close();
  return { found: true, ready_state: track.readyState, max_rms: maxRms,
           max_dbfs: maxRms > 0 ? 20 * Math.log10(maxRms) : -1000, samples, ctx_state: ctxState };
}
"""

#: ``cellIndex -> {local, remote}``: draws the widget's local preview and returned <video> to canvases and
#: reports, for the top and bottom halves (a 10 % band around the middle left out), the mean luma and the
#: mean saturation (max(R,G,B) - min(R,G,B)), plus the picture sizes.
VIDEO_HALVES_JS = """
(index) => {
  const root = document.querySelectorAll('.jp-Notebook .jp-Cell')[index].querySelector('.rm-widget');
  const measure = (v) => {
    const w = v.videoWidth, h = v.videoHeight;
    if (!w || !h) return null;
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0, w, h);
    const d = g.getImageData(0, 0, w, h).data;
    const half = (y0, y1) => {
      let luma = 0, sat = 0, n = 0;
      for (let y = y0; y < y1; y++) for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 4, r = d[i], gg = d[i + 1], b = d[i + 2];
        luma += 0.299 * r + 0.587 * gg + 0.114 * b;
        sat += Math.max(r, gg, b) - Math.min(r, gg, b);
        n++;
      }
      return { luma: luma / n, sat: sat / n };
    };
    const m = Math.round(h * 0.05);
    return { width: w, height: h, top: half(0, Math.floor(h / 2) - m), bottom: half(Math.ceil(h / 2) + m, h) };
  };
  return { local: measure(root.querySelector('video.rm-local')), \
remote: measure(root.querySelector('video.rm-remote')) };
}
"""
