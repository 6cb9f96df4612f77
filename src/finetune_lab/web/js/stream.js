// Server-Sent Events over fetch(): EventSource cannot send the Authorization header, and a
// token in the URL would end up in logs. Reconnects with Last-Event-ID, so nothing is missed.

import { authHeaders } from "./api.js";

const MAX_DELAY_MS = 10_000;

export function openStream(path, { onEvent, onState }) {
  let lastId = null;
  let stopped = false;
  let controller = null;
  let retryMs = 2000;

  function dispatch(fields) {
    if (fields.id !== undefined && /^\d+$/.test(fields.id)) lastId = fields.id;
    if (fields.data === undefined) return;
    let data;
    try {
      data = JSON.parse(fields.data.join("\n"));
    } catch {
      return;
    }
    onEvent(fields.event || "message", data, lastId);
  }

  async function readOnce() {
    controller = new AbortController();
    const headers = { ...authHeaders(), Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) {
      const error = new Error(`stream answered HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let fields = {};
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          dispatch(fields);
          fields = {};
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") (fields.data ??= []).push(text);
        else if (name === "retry" && /^\d+$/.test(text)) retryMs = Number(text);
        else fields[name] = text;
      }
    }
  }

  (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        await readOnce();
        failures = 0;
      } catch (error) {
        if (stopped) return;
        if (error.status === 401 || error.status === 403 || error.status === 404) {
          onState("closed", error);
          return;
        }
        failures += 1;
      }
      if (stopped) return;
      onState("reconnecting");
      const delay = Math.min(retryMs * 2 ** Math.max(failures - 1, 0), MAX_DELAY_MS);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  })();

  return {
    close() {
      stopped = true;
      controller?.abort();
    },
  };
}
