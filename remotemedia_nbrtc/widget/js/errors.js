// What the widget tells the user when something is wrong, and what they can do about it.

import { ERROR_CODES } from "./protocol.js";

// the extension closes the signaling WebSocket with this code when no kernel serves the session
// (CLOSE_UNKNOWN_SESSION in server/handlers.py)
const CLOSE_UNKNOWN_SESSION = 4404;

export const SESSION_GONE = "The kernel no longer serves this session (kernel restarted or the handle was closed): re-run the cell.";

const VSCODE_NO_MEDIA = "VS Code notebooks cannot use the microphone or camera (its webviews deny getUserMedia). " +
  "Open this notebook in JupyterLab or Notebook 7 in a browser.";

/** What to tell the user when getUserMedia (or playing a media file) failed with `err`. */
export function friendlyMediaError(err, host) {
  const name = (err && err.name) || "";
  if (host === "vscode")
    return VSCODE_NO_MEDIA;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Permission denied: allow microphone/camera access for this page (the icon in the address bar), then press Start.";
  if (name === "NotFoundError" || name === "OverconstrainedError")
    return "No device found: plug in a microphone/camera or pick another device, then press Start.";
  if (name === "NotReadableError")
    return "The device is busy or unavailable (another application may hold it). Close it and press Start.";
  return "Could not open the microphone/camera: " + (err && err.message ? err.message : String(err));
}

/** Why this stream cannot start here (null: nothing found before trying). */
export function preflightProblem(model, host, transportSetting) {
  if (model.get("error")) return model.get("error");
  if (model.get("closed")) return "This stream was closed in the kernel (handle.close()): re-run the cell to start a new one.";
  if (host === "vscode")
    return VSCODE_NO_MEDIA;
  if (!window.isSecureContext)
    return "This page is not a secure context (http:// on a host other than localhost), so the browser " +
      "hides the microphone and camera. Open Jupyter over https:// or via http://localhost (e.g. an SSH tunnel).";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
    return "This browser has no getUserMedia: use a recent Chrome, Firefox or Safari.";
  if (typeof RTCPeerConnection === "undefined" && transportSetting === "webrtc")
    return "This browser has no WebRTC (RTCPeerConnection), and this stream is set to transport='webrtc'.";
  if (!model.get("session_id") || !model.get("ws_path")) return "No kernel session: re-run the cell.";
  if (!model.get("audio") && !model.get("video")) return "Nothing to stream: pass audio=True and/or video=True.";
  return null;
}

/** What to tell the user when connecting failed with `e` (a JSON-RPC error, a WebSocket close, or else). */
export function describeConnectError(e) {
  if (e && e.rpc) {
    if (e.rpc.code === ERROR_CODES.SESSION_UNAVAILABLE) return SESSION_GONE;
    return "Signaling error " + e.rpc.code + ": " + e.rpc.message + (e.rpc.data ? " " + JSON.stringify(e.rpc.data) : "");
  }
  if (e && e.code !== undefined) {
    if (e.code === CLOSE_UNKNOWN_SESSION) return SESSION_GONE;
    return "Could not open the signaling WebSocket (" + (e.code || "no code") + (e.reason ? ", " + e.reason : "") +
      "). Is the remotemedia_nbrtc server extension loaded, and is the kernel running?";
  }
  return "Connection failed: " + (e && e.message ? e.message : String(e));
}

/** What to tell the user when the signaling WebSocket closed under a running stream (`ev`: its close event). */
export function describeSocketClose(ev, mediaConnected) {
  if (ev && ev.code === CLOSE_UNKNOWN_SESSION) return SESSION_GONE;
  if (mediaConnected) return "The signaling connection to the kernel closed (kernel restarted, or the handle was closed). Re-run the cell.";
  return "The signaling connection closed" + (ev && ev.reason ? ": " + ev.reason : "") + ".";
}
