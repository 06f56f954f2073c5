// JSON-RPC 2.0 over the server extension's WebSocket (<base_url>remotemedia/ws/<session_id>). The same socket
// carries the WebSocket media fallback's binary frames (see ws_media_link.js), handed to `onBinary`.

const RPC_TIMEOUT_MS = 20000;
// The name onNotify gets for an error response that answers no request (e.g. the session went away): not a
// protocol method, the "__" keeps it apart from every one.
export const UNSOLICITED_ERROR = "__error__";

export class RpcSocket {
  constructor(url, onNotify, onClose) {
    this.url = url;
    this.onNotify = onNotify;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.closedByUs = false;
  }

  open(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";  // WebSocket media frames (see WsMediaLink)
      this.ws = ws;
      const timer = setTimeout(() => {
        if (!settled) { settled = true; reject(new Error("timed out opening the signaling WebSocket")); ws.close(); }
      }, timeoutMs);
      ws.onopen = () => { if (!settled) { settled = true; clearTimeout(timer); resolve(); } };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        clearTimeout(timer);
        for (const [, p] of this.pending) p.reject(new Error("signaling connection closed"));
        this.pending.clear();
        if (!settled) { settled = true; reject(Object.assign(new Error("signaling WebSocket failed"), { code: ev.code, reason: ev.reason })); return; }
        if (!this.closedByUs && this.onClose) this.onClose(ev);
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data === "string") this._onMessage(ev.data);
        else if (this.onBinary) this.onBinary(ev.data);
      };
    });
  }

  _onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p.reject(Object.assign(new Error(msg.error.message), { rpc: msg.error }));
      else p.resolve(msg.result);
      return;
    }
    if (msg.method) { this.onNotify(msg.method, msg.params || {}); return; }
    if (msg.error) this.onNotify(UNSOLICITED_ERROR, msg.error);
  }

  call(method, params, timeoutMs = RPC_TIMEOUT_MS) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("signaling not connected"));
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(method + " timed out")); }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
    this.ws.send(JSON.stringify({ jsonrpc: "2.0", method, params, id }));
    return p;
  }

  notify(method, params) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
  }

  close() {
    this.closedByUs = true;
    if (this.ws) try { this.ws.close(1000, "client closed"); } catch (e) {}
  }
}
