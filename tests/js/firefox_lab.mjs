// Drives Firefox ESR (puppeteer-core over WebDriver BiDi) through a JupyterLab notebook that streams the
// fake mic into the kernel with the remotemedia_nbrtc widget. Called by tests/browser/test_firefox_widget.py:
//   node firefox_lab.mjs '<json config>'
// config: { url, firefox, timeout_ms, screenshot, setup_cell, stream_cell, check_cell, check_pattern }
// Prints exactly one line `RESULT {json}` (also on failure or on its own hard timeout) and exits.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const cfg = JSON.parse(process.argv[2] || "{}");
const t0 = Date.now();
const marks = {};
const mark = (name) => { marks[name] = (Date.now() - t0) / 1000; };
let printed = false;
function result(obj) {
  if (printed) return;
  printed = true;
  process.stdout.write("RESULT " + JSON.stringify({ ...obj, marks }) + "\n");
}

let browser = null;
const hardTimer = setTimeout(async () => {
  result({ ok: false, error: `driver timed out after ${cfg.timeout_ms} ms` });
  try { if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 3000))]); } catch (e) {}
  process.exit(2);
}, cfg.timeout_ms || 90000);

const KERNEL_IDLE = () => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const s = w && w.sessionContext;
  return !!(s && s.isReady && s.session && s.session.kernel && s.session.kernel.status === "idle");
};

async function runCell(page, index) {
  await page.evaluate(async (i) => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    panel.content.activeCellIndex = i;
    panel.content.deselectAll();
    await app.commands.execute("notebook:run-cell");
  }, index);
  await page.waitForFunction(KERNEL_IDLE, { polling: 100, timeout: 20000 });
}

async function waitOutput(page, index, pattern, timeout = 20000) {
  const handle = await page.waitForFunction((i, src) => {
    const cell = document.querySelectorAll(".jp-Notebook .jp-Cell")[i];
    const out = cell && cell.querySelector(".jp-OutputArea");
    const text = out ? out.innerText : "";
    return new RegExp(src).test(text) ? text : false;
  }, { polling: 100, timeout }, index, pattern);
  return await handle.jsonValue();
}

async function main() {
  const puppeteer = createRequire(path.join(here, "package.json"))("puppeteer-core");
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: cfg.firefox || "/usr/bin/firefox-esr",
    headless: true,
    timeout: 30000,
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true,        // fake mic (1 kHz sine) + fake camera
      "permissions.default.microphone": 1,         // allow, and ICE gathers every interface
      "permissions.default.camera": 1,
      "media.peerconnection.ice.loopback": true,   // offer 127.0.0.1 candidates
      "media.cubeb.force_mock_context": true,      // no sound device in the container
    },
  });
  mark("launched");
  const version = await browser.version();
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
  try {
    await page.goto(cfg.url);
    await page.waitForSelector(".jp-Notebook .jp-Cell", { timeout: 30000 });
    await page.waitForFunction(KERNEL_IDLE, { polling: 100, timeout: 30000 });
    mark("kernel_idle");
    await runCell(page, cfg.setup_cell);
    await waitOutput(page, cfg.setup_cell, "SETUP_OK");
    const tRun = Date.now();
    await runCell(page, cfg.stream_cell);
    const sel = (s) => `.jp-Notebook .jp-Cell:nth-child(${cfg.stream_cell + 1} of .jp-Cell) ${s}`;
    await page.waitForSelector(sel(".rm-widget[data-state='connected']"), { timeout: 20000 });
    const connectedS = (Date.now() - tRun) / 1000;
    mark("connected");
    // results under the cell: a VAD event line and live plot frames pushed from the kernel
    await page.waitForFunction((s) => [...document.querySelectorAll(s)].some((e) => /speech started/.test(e.textContent)),
      { polling: 100, timeout: 15000 }, sel(".rm-text .rm-line"));
    mark("text");
    await page.waitForFunction((s) => { const i = document.querySelector(s); return i && +i.dataset.frames >= 3 && i.width > 100; },
      { polling: 100, timeout: 15000 }, sel("canvas.rm-plot"));
    mark("plot");
    await page.waitForFunction((s) => { const td = document.querySelector(s); return td && /^\d+(\.\d+)? ms \(browser/.test(td.textContent); },
      { polling: 100, timeout: 15000 }, sel(".rm-stats tr[data-key='end-to-end RTT'] td"));
    // ICE details come from pc.getStats(), polled once a second
    await page.waitForFunction((s) => { const td = document.querySelector(s); return td && /127\./.test(td.textContent); },
      { polling: 100, timeout: 5000 }, sel(".rm-stats tr[data-key='selected pair'] td")).catch(() => {});
    const widget = await page.evaluate((s) => {
      const root = document.querySelector(s);
      const row = (k) => { const td = root.querySelector(`.rm-stats tr[data-key='${k}'] td`); return td ? td.textContent : null; };
      return { state: root.dataset.state, lines: [...root.querySelectorAll(".rm-text .rm-line")].map((e) => e.textContent).slice(0, 5),
        plot_frames: +root.querySelector("canvas.rm-plot").dataset.frames, host: row("host"), e2e_rtt: row("end-to-end RTT"),
        selected_pair: row("selected pair"), audio_path: row("audio path"), mic: root.querySelector("select.rm-mic").selectedOptions[0]?.textContent || null };
    }, sel(".rm-widget"));
    await new Promise((r) => setTimeout(r, 1200));  // the browser reports its stats to the kernel once a second
    await runCell(page, cfg.check_cell);
    const check = await waitOutput(page, cfg.check_cell, cfg.check_pattern);
    if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true });
    result({ ok: true, version, connected_s: connectedS, widget, check, console: consoleLines.slice(-20) });
  } catch (e) {
    try { if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true }); } catch (e2) {}
    let dom = null;
    try { dom = await page.evaluate(() => [...document.querySelectorAll(".rm-widget")].map((r) => r.dataset.state + " | " + r.innerText.slice(0, 400))); } catch (e3) {}
    result({ ok: false, version, error: String(e && e.stack ? e.stack : e), widgets: dom, console: consoleLines.slice(-40) });
  }
}

main()
  .catch((e) => result({ ok: false, error: String(e && e.stack ? e.stack : e) }))
  .finally(async () => {
    try { if (browser) await browser.close(); } catch (e) {}
    mark("closed");
    clearTimeout(hardTimer);
    process.exit(0);
  });
