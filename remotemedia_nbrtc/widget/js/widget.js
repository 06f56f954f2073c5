// remotemedia_nbrtc stream widget: browser mic/camera -> WebRTC -> pipeline in the kernel -> results.
// The anywidget entry module. The front end is ES modules of one concept each (this directory), joined into the
// one ESM anywidget takes by widget/assemble.py: no build step.

import { StreamView } from "./stream_view.js";

function render({ model, el }) {
  const view = new StreamView(model, el);
  if (model.get("error")) view.showKernelError();
  else if (model.get("closed")) view.setStatus("closed by the kernel", "closed");
  else if (model.get("autostart")) view.start();
  return () => view.dispose();
}

export default { render };
