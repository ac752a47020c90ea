import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

/** WebSocket frame opcodes a test may write by hand. */
export const Opcode = { Text: 0x1, Binary: 0x2, Close: 0x8 } as const;

/**
 * A WebSocket connection driven at the frame level over a bare TCP socket,
 * for what a well-behaved client library refuses to do: writing frames after
 * its own close frame. It reads nothing after the handshake except the
 * server's first bytes, which it keeps in `received`.
 */
export class RawSocket {
  /** Bytes the server sent after the handshake (its welcome, replies, ...). */
  received = Buffer.alloc(0);
  private readonly watchers = new Set<() => void>();

  private constructor(private readonly socket: Socket) {}

  /** The JSON text frames received so far (unmasked, unfragmented server frames). */
  frames(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    const buf = this.received;
    let i = 0;
    while (i + 2 <= buf.length) {
      let length = (buf[i + 1] ?? 0) & 0x7f;
      let offset = i + 2;
      if (length === 126) {
        length = buf.readUInt16BE(offset);
        offset += 2;
      } else if (length === 127) {
        length = Number(buf.readBigUInt64BE(offset));
        offset += 8;
      }
      if (offset + length > buf.length) break;
      if (((buf[i] ?? 0) & 0x0f) === Opcode.Text) {
        out.push(JSON.parse(buf.subarray(offset, offset + length).toString()) as Record<string, unknown>);
      }
      i = offset + length;
    }
    return out;
  }

  /** Resolves with the frames once `done(frames)` holds, checked as bytes arrive; rejects after `timeout` ms. */
  until(done: (frames: Array<Record<string, unknown>>) => boolean, what: string, timeout = 2000) {
    return new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
      const check = () => {
        const frames = this.frames();
        if (!done(frames)) return;
        cleanup();
        resolve(frames);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}`));
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.watchers.delete(check);
      };
      this.watchers.add(check);
      check();
    });
  }

  /** Connects to a `ws://host:port/path` URL and completes the opening handshake. */
  static async open(url: string, timeout = 2000): Promise<RawSocket> {
    const { hostname, port, pathname, search } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    const raw = new RawSocket(socket);
    await new Promise<void>((resolve, reject) => {
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => reject(new Error('no handshake answer')), timeout);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(timer);
        socket.off('data', onData);
        const status = head.subarray(0, head.indexOf('\r\n')).toString();
        if (!status.includes(' 101 ')) return reject(new Error(`upgrade refused: ${status}`));
        raw.received = head.subarray(end + 4);
        socket.on('data', (more: Buffer) => {
          raw.received = Buffer.concat([raw.received, more]);
          for (const check of [...raw.watchers]) check();
        });
        resolve();
      };
      socket.on('data', onData);
      socket.on('error', reject);
      socket.on('connect', () => {
        socket.write(
          `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
            'Sec-WebSocket-Version: 13\r\n\r\n',
        );
      });
    });
    socket.on('error', () => {
      // The server may cut the socket after the close handshake; the test observes that elsewhere.
    });
    return raw;
  }

  /** Encodes one final, masked client frame. */
  static frame(opcode: number, payload: Buffer | string): Buffer {
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const mask = randomBytes(4);
    const length = data.length;
    const header =
      length < 126
        ? Buffer.from([0x80 | opcode, 0x80 | length])
        : length < 65_536
          ? Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff])
          : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), bigLength(length)]);
    const masked = Buffer.alloc(length);
    for (let i = 0; i < length; i++) masked[i] = (data[i] ?? 0) ^ (mask[i % 4] ?? 0);
    return Buffer.concat([header, mask, masked]);
  }

  /** Writes frames in one TCP write, so the server reads them together. */
  write(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** A close frame with a status code. */
  static closeFrame(code = 1000): Buffer {
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    return RawSocket.frame(Opcode.Close, payload);
  }

  /** A text frame holding one JSON request. */
  static json(message: object): Buffer {
    return RawSocket.frame(Opcode.Text, JSON.stringify(message));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function bigLength(length: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(length));
  return bytes;
}
