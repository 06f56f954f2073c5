// The end-to-end latency probe (StreamOptions(latency_probe=True)): rm.ping messages sent through the kernel's
// pipeline and back on the data path, each timed from send to return.

const MAX_OUTSTANDING = 20;
const KEEP_RTTS = 10;

export class LatencyProbe {
  constructor() {
    this.pings = new Map();  // id -> performance.now() when sent
    this.rtts = [];          // the last KEEP_RTTS round trips, ms
    this.seq = 0;
  }

  /** The next ping for `peerId`, as the data message (JSON text) to send. */
  ping(peerId) {
    const id = ++this.seq;
    this.pings.set(id, performance.now());
    if (this.pings.size > MAX_OUTSTANDING) this.pings.delete(this.pings.keys().next().value);
    return JSON.stringify({ type: "json", value: { kind: "rm.ping", id, peer: peerId } });
  }

  /** Records the round trip if `value` (an rm.ping that came back) answers one of our pings; true if it did. */
  answered(value, peerId) {
    if (value.peer !== peerId || !this.pings.has(value.id)) return false;
    const rtt = performance.now() - this.pings.get(value.id);
    this.pings.delete(value.id);
    this.rtts.push(rtt);
    if (this.rtts.length > KEEP_RTTS) this.rtts.shift();
    return true;
  }

  reset() {
    this.pings.clear();
    this.rtts = [];
  }
}
