// Binary media frames, the wire format of the WebSocket media fallback and of data-channel audio (kernel side:
// transport/wsmedia.py): a FRAME_HEADER_BYTES header, then the payload; audio payloads are pcm16 or Opus.

import { FRAME_HEADER_BYTES } from "./protocol.js";

export function wallUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** One binary frame: kind (u8), sequence (u32 LE), timestamp in µs (u64 LE), payload. */
export function packFrame(kind, seq, tsUs, payload) {
  const bytes = payload instanceof ArrayBuffer ? new Uint8Array(payload)
    : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const out = new Uint8Array(FRAME_HEADER_BYTES + bytes.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, kind);
  dv.setUint32(1, seq >>> 0, true);
  dv.setBigUint64(5, BigInt(Math.max(0, Math.round(tsUs))), true);
  out.set(bytes, FRAME_HEADER_BYTES);
  return out.buffer;
}

export function unpackFrame(buf) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength < FRAME_HEADER_BYTES) return null;
  const dv = new DataView(buf);
  return { kind: dv.getUint8(0), seq: dv.getUint32(1, true), ts_us: Number(dv.getBigUint64(5, true)),
    payload: new Uint8Array(buf, FRAME_HEADER_BYTES) };
}

/** Float samples in -1..1 as pcm16 (clipped). */
export function floatToPcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    pcm[i] = v < 0 ? v * 32768 : v * 32767;
  }
  return pcm;
}
