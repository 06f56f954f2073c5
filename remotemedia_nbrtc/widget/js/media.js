// The local media: getUserMedia constraints, the devices and permissions the browser reports, and a media file
// played (looping) and captured instead of the mic/camera.

import { element } from "./dom.js";

/** getUserMedia constraints for the stream's settings. audio_constraints / video_constraints from Python
 *  (sampleRate, width, frameRate, deviceId...) are merged in; a device picked in the widget (`micId`, `camId`)
 *  wins over a deviceId given in Python. */
export function mediaConstraints(model, micId, camId) {
  const audioExtra = model.get("audio_constraints") || {}, videoExtra = model.get("video_constraints") || {};
  const audio = model.get("audio")
    ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false, ...audioExtra,
        ...(micId ? { deviceId: { exact: micId } } : {}) }
    : false;
  const video = model.get("video")
    ? { ...videoExtra, ...(camId ? { deviceId: { exact: camId } } : {}) }
    : false;
  return { audio, video };
}

/** The browser's microphones and cameras (labels only once a permission was granted). */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return { audioinput: all.filter((d) => d.kind === "audioinput"), videoinput: all.filter((d) => d.kind === "videoinput") };
}

/** Fills a device <select> with `list`, keeping the selected device if it is still there. */
export function fillDeviceSelect(sel, list) {
  const keep = sel.value;
  sel.replaceChildren(...list.map((d, i) => {
    const o = element("option", "", d.label || (d.kind === "audioinput" ? "microphone " : "camera ") + (i + 1));
    o.value = d.deviceId;
    return o;
  }));
  if (keep && list.some((d) => d.deviceId === keep)) sel.value = keep;
}

/** Sets `into.microphone` / `into.camera` to the permission states ("granted", "prompt", "denied", "unknown"). */
export async function readPermissions(into) {
  if (!navigator.permissions) return;
  for (const name of ["microphone", "camera"]) {
    try { into[name] = (await navigator.permissions.query({ name })).state; }
    catch (e) { into[name] = "unknown"; }
  }
}

/** stream(media_file=...): plays the file in a looping media element in `container` and streams what it plays. */
export class MediaFilePlayer {
  constructor(container) {
    this.container = container;
    this.url = null;
  }

  async play(bytes, type) {
    const el = element(type.startsWith("video/") ? "video" : "audio", "rm-media-file");
    el.loop = true; el.controls = true; el.playsInline = true;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = URL.createObjectURL(new Blob([bytes], type ? { type } : {}));
    el.src = this.url;
    this.container.querySelectorAll(".rm-media-file").forEach((old) => old.remove());
    this.container.appendChild(el);
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
}
