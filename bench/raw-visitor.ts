import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

/**
 * A minimal WebSocket client (RFC 6455) for the visitor endpoint, light enough to hold
 * hundreds of thousands of idle sessions in one process: no `ws` objects, no per-frame
 * JSON parsing unless asked. Answers pings (the bridge's heartbeat terminates silent
 * sockets), masks with a zero key (valid: §5.3 allows any key; XOR with 0 is the identity).
 */
export interface RawVisitorOptions {
  port: number;
  path: string;
  localAddress?: string;
  /** The source port; left to the kernel when unset. */
  localPort?: number;
  /** Called with each complete text frame (the raw UTF-8 payload). */
  onText?(payload: Buffer): void;
  onClose?(): void;
}

const ZERO_MASK = Buffer.alloc(4);

export class RawVisitor {
  readonly socket: Socket;
  /** Resolves with the first text frame (the bridge's `welcome`). */
  readonly welcome: Promise<Buffer>;
  private buffer: Buffer | null = null;
  private upgraded = false;
  private onText: ((payload: Buffer) => void) | undefined;

  constructor(options: RawVisitorOptions) {
    this.onText = options.onText;
    let resolveWelcome!: (b: Buffer) => void;
    let rejectWelcome!: (e: Error) => void;
    this.welcome = new Promise((resolve, reject) => {
      resolveWelcome = resolve;
      rejectWelcome = reject;
    });
    let welcomed = false;
    const firstText = (payload: Buffer) => {
      if (!welcomed) {
        welcomed = true;
        resolveWelcome(payload);
      } else this.onText?.(payload);
    };
    const source = { ...(options.localAddress ? { localAddress: options.localAddress } : {}), ...(options.localPort ? { localPort: options.localPort } : {}) };
    this.socket = connect({ host: "127.0.0.1", port: options.port, ...source }, () => {
      this.socket.setNoDelay(true);
      this.socket.write(
        `GET ${options.path} HTTP/1.1\r\nHost: 127.0.0.1:${options.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk, firstText, rejectWelcome));
    this.socket.on("error", (err) => rejectWelcome(err));
    this.socket.on("close", () => {
      rejectWelcome(new Error("closed before welcome"));
      options.onClose?.();
    });
  }

  setOnText(handler: (payload: Buffer) => void): void {
    this.onText = handler;
  }

  sendText(text: string): void {
    const payload = Buffer.from(text, "utf8");
    const len = payload.length;
    let header: Buffer;
    if (len < 126) header = Buffer.from([0x81, 0x80 | len]);
    else if (len < 65536) header = Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
    else throw new Error("frame too large for this client");
    this.socket.write(Buffer.concat([header, ZERO_MASK, payload]));
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer, onText: (payload: Buffer) => void, fail: (e: Error) => void): void {
    let data = this.buffer ? Buffer.concat([this.buffer, chunk]) : chunk;
    this.buffer = null;
    if (!this.upgraded) {
      const end = data.indexOf("\r\n\r\n");
      if (end === -1) {
        this.buffer = data;
        return;
      }
      const status = data.subarray(0, data.indexOf("\r\n")).toString("latin1");
      if (!status.startsWith("HTTP/1.1 101")) {
        fail(new Error(`upgrade refused: ${status}`));
        this.socket.destroy();
        return;
      }
      this.upgraded = true;
      data = data.subarray(end + 4);
    }
    let offset = 0;
    while (data.length - offset >= 2) {
      const b0 = data[offset]!;
      let len = data[offset + 1]! & 0x7f;
      let headerLen = 2;
      if (len === 126) {
        if (data.length - offset < 4) break;
        len = data.readUInt16BE(offset + 2);
        headerLen = 4;
      } else if (len === 127) {
        if (data.length - offset < 10) break;
        len = Number(data.readBigUInt64BE(offset + 2));
        headerLen = 10;
      }
      if (data.length - offset < headerLen + len) break;
      const payload = data.subarray(offset + headerLen, offset + headerLen + len);
      offset += headerLen + len;
      const opcode = b0 & 0x0f;
      if (opcode === 0x1) onText(Buffer.from(payload)); // copy: the chunk is not retained
      else if (opcode === 0x9) this.socket.write(Buffer.concat([Buffer.from([0x8a, 0x80 | payload.length]), ZERO_MASK, payload]));
      else if (opcode === 0x8) this.socket.end();
    }
    if (offset < data.length) this.buffer = Buffer.from(data.subarray(offset));
  }
}
