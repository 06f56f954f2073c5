// The widget's DOM: its elements, and the text area where pipeline and kernel text appears.

const MAX_TEXT_LINES = 200;

/** A new `tag` element with class `cls` and text `text`. */
export function element(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Builds the widget inside `el`; its parts by name. */
export function buildDom(el) {
  const root = element("div", "rm-widget");
  const bar = element("div", "rm-bar");
  const start = element("button", "rm-start", "Start");
  const stop = element("button", "rm-stop", "Stop");
  const mute = element("button", "rm-mute", "Mute");
  const mic = element("select", "rm-mic");
  const cam = element("select", "rm-cam");
  const statsBtn = element("button", "rm-stats-toggle", "Stats");
  stop.disabled = true; mute.disabled = true;
  mic.title = "Microphone"; cam.title = "Camera";
  bar.append(start, stop, mute, mic, cam, statsBtn);
  const status = element("div", "rm-status", "idle");
  const error = element("div", "rm-error");
  error.hidden = true;
  const media = element("div", "rm-media");
  const local = element("video", "rm-local");
  local.muted = true; local.autoplay = true; local.playsInline = true;
  const remote = element("video", "rm-remote");
  remote.autoplay = true; remote.playsInline = true;
  const remoteFrame = element("canvas", "rm-remote-frame");  // returned video over the WebSocket fallback
  remoteFrame.hidden = true;
  const audioOut = element("audio", "rm-audio-out");
  audioOut.autoplay = true;
  media.append(local, remote, remoteFrame, audioOut);
  const plot = element("canvas", "rm-plot");  // drawn from the kernel's data (drawPlot); PNG frames go to plotImg
  plot.setAttribute("aria-label", "live plot");
  plot.hidden = true;
  const plotImg = element("img", "rm-plot-png");
  plotImg.alt = "live plot";
  plotImg.hidden = true;
  const text = element("div", "rm-text");
  const stats = element("div", "rm-stats");
  stats.hidden = true;
  root.append(bar, status, error, media, plot, plotImg, text, stats);
  el.appendChild(root);
  return { root, start, stop, mute, mic, cam, statsBtn, status, error, media, local, remote, remoteFrame, audioOut, plot, plotImg, text, stats };
}

/** The text area: final lines are appended (the last MAX_TEXT_LINES kept), a partial line is shown in place
 *  until its final version comes. */
export class TextLog {
  constructor(container) {
    this.container = container;
    this.partialLine = null;
  }

  append(text, final = true, cls = "") {
    const box = this.container;
    if (!final) {
      if (!this.partialLine) { this.partialLine = element("div", "rm-line rm-partial"); box.appendChild(this.partialLine); }
      this.partialLine.textContent = text;
    } else {
      if (this.partialLine) { this.partialLine.remove(); this.partialLine = null; }
      box.appendChild(element("div", "rm-line " + cls, text));
      while (box.childElementCount > MAX_TEXT_LINES) box.firstElementChild.remove();
    }
    box.scrollTop = box.scrollHeight;
  }
}
