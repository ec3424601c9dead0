// Live updates over the API's Server-Sent Events streams.
//
// The browser's EventSource reconnects by itself after a dropped connection and sends the
// last `id:` it saw as Last-Event-ID, so nothing is missed or repeated. Two cases it does
// not handle are handled here: a `resync` event (the server dropped a client that fell
// behind: reconnect from the position it names) and a refused connection (an error status,
// which ends the EventSource for good: try again later, from the last position seen).

import { setLive } from "./ui.js";

export function watch(path, onChange) {
  let source = null;
  let last = null;
  let retry = 2000;
  let timer = null;
  let stopped = false;

  const url = () => {
    if (!last) return path;
    return `${path}${path.includes("?") ? "&" : "?"}last_event_id=${encodeURIComponent(last)}`;
  };

  const open = () => {
    if (stopped) return;
    source = new EventSource(url(), { withCredentials: true });
    source.addEventListener("open", () => {
      retry = 2000;
      setLive("Live", "on");
    });
    source.addEventListener("change", (e) => {
      if (e.lastEventId) last = e.lastEventId;
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      onChange(data);
    });
    source.addEventListener("resync", (e) => {
      // The data is the position to resume from.
      const at = (e.data || "").trim();
      if (at) last = at;
      reopen(0);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("Live updates paused, retrying", "off");
        reopen(retry);
        retry = Math.min(retry * 2, 60000);
      } else {
        setLive("Reconnecting…", "off");
      }
    });
  };

  const reopen = (delay) => {
    if (source) source.close();
    source = null;
    clearTimeout(timer);
    timer = setTimeout(open, delay);
  };

  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (source) source.close();
      setLive("", "");
    },
  };
}
