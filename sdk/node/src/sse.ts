/**
 * A Server-Sent Events decoder (the WHATWG `text/event-stream` format): text in, events out.
 * Lines may end in CRLF, LF or CR, and may be split anywhere across chunks.
 */

export interface RawEvent {
  event: string;
  data: string;
  /** The last `id:` seen so far (it persists across events, as in EventSource). */
  id: string | undefined;
}

export class SSEDecoder {
  lastId: string | undefined;
  /** The reconnection delay the server asked for (`retry:`), in milliseconds. */
  retryMs: number | undefined;
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private started = false;
  private pendingCR = false;

  /** Feed decoded text; returns the events it completed. */
  push(text: string): RawEvent[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1); // the LF of a split CRLF
    this.pendingCR = false;
    this.buffer += text;
    const out: RawEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const event = this.line(this.buffer.slice(start, i));
      if (event) out.push(event);
      if (c === 13) {
        if (i + 1 === this.buffer.length) this.pendingCR = true;
        else if (this.buffer.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string): RawEvent | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined; // a comment (proxies send these as keep-alives)
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.lastId = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }

  private dispatch(): RawEvent | undefined {
    const event = this.event || "message";
    const data = this.data;
    this.event = "";
    this.data = [];
    if (data.length === 0) return undefined;
    return { event, data: data.join("\n"), id: this.lastId };
  }
}
