// The page the widget runs in: Jupyter's page config, the host (JupyterLab, Notebook 7, VS Code...), the
// server extension's URLs with their auth, and which candidates and audio path suit where the kernel is.

// BENCH HOOK (bench/browser_latency.py only; inert unless a page script sets window.__rmBench before the
// widget starts): `stream()` -> a MediaStream used instead of getUserMedia (e.g. WebAudio bursts), and
// `onPeer(pc, dc)` is called just before createOffer (the bench listens to the data channel / tracks itself).
export function benchHook() {
  return (typeof window !== "undefined" && window.__rmBench) || null;
}

export function pageConfig(doc = document) {
  const el = doc.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent || "{}");
  } catch (e) {
    return null;
  }
}

export function readCookie(name, doc = document) {
  const m = (doc.cookie || "").match("(^|;)\\s*" + name + "\\s*=\\s*([^;]+)");
  return m ? decodeURIComponent(m.pop()) : "";
}

export function detectHost(win = window) {
  const cfg = pageConfig(win.document);
  if (win.google && win.google.colab) return "colab";
  const proto = (win.location && win.location.protocol) || "";
  if (proto.startsWith("vscode") || typeof win.acquireVsCodeApi === "function") return "vscode";
  if (cfg && /notebook/i.test(cfg.appName || "")) return "notebook7";
  if (cfg && /lab/i.test(cfg.appName || "")) return "jupyterlab";
  if (cfg) return "jupyter";
  return "unknown";
}

export function baseUrl(cfg) {
  let base = (cfg && cfg.baseUrl) || "/";
  if (!base.endsWith("/")) base += "/";
  return base;
}

function authParams(cfg) {
  const q = new URLSearchParams();
  if (cfg && cfg.token) q.set("token", cfg.token);
  const xsrf = readCookie("_xsrf");
  if (xsrf) q.set("_xsrf", xsrf);
  return q;
}

export function authHeaders(cfg) {
  const h = {};
  if (cfg && cfg.token) h["Authorization"] = "token " + cfg.token;
  const xsrf = readCookie("_xsrf");
  if (xsrf) h["X-XSRFToken"] = xsrf;
  return h;
}

export function signalingUrl(cfg, wsPath, loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  const q = authParams(cfg).toString();
  return scheme + "//" + loc.host + baseUrl(cfg) + wsPath + (q ? "?" + q : "");
}

/** True for a page served from this machine (localhost, 127.x.x.x, ::1): the kernel is then on this host too. */
export function isLoopbackHost(hostname) {
  const h = String(hostname || "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || /^127\.\d+\.\d+\.\d+$/.test(h) || h === "[::1]" || h === "::1";
}

/** "rtp" | "datachannel" for a stream's `audio_transport` setting: "auto" picks the data channel when the
 *  kernel is on this machine (loopback_only, or a page served from localhost), where it is lowest latency and
 *  nothing gets lost, and RTP (Opus, loss concealment, congestion control) across networks. */
export function resolveAudioTransport(setting, loopbackOnly, hostname) {
  if (setting === "rtp" || setting === "datachannel") return setting;
  return loopbackOnly || isLoopbackHost(hostname) ? "datachannel" : "rtp";
}

// Keep only loopback candidates (tests / hermetic CI); false drops the candidate.
export function keepCandidate(candidateLine, loopbackOnly) {
  if (!loopbackOnly || !candidateLine) return true;
  return / 127\.\d+\.\d+\.\d+ /.test(candidateLine);
}
