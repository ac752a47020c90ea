import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterEach } from 'vitest';
import { RATE_ABUSE_MIN_FRAMES } from '../src/limits.js';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { within } from './server-harness.js';

/** Server frame opcodes these tests look for. */
export const ServerOpcode = { Text: 0x1, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;

/** One frame the server sent: its opcode and unmasked payload. */
export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

/**
 * `ping` requests enough for the rate limiter to call them abuse when sent at
 * once to a session with a burst of 1 and an unadvanced clock.
 */
export const PING_FLOOD: readonly Buffer[] = Array.from({ length: 2 * RATE_ABUSE_MIN_FRAMES }, (_, id) =>
  RawSocket.json({ op: 'ping', id }),
);

const peers: Socket[] = [];

afterEach(() => {
  for (const socket of peers.splice(0)) socket.destroy();
});

/** Splits what the server sent into whole frames (unmasked, unfragmented). */
function serverFrames(bytes: Buffer): ServerFrame[] {
  const frames: ServerFrame[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    let length = (bytes[at + 1] ?? 0) & 0x7f;
    let offset = at + 2;
    if (length === 126) {
      if (offset + 2 > bytes.length) break;
      length = bytes.readUInt16BE(offset);
      offset += 2;
    } else if (length === 127) {
      if (offset + 8 > bytes.length) break;
      length = Number(bytes.readBigUInt64BE(offset));
      offset += 8;
    }
    if (offset + length > bytes.length) break;
    frames.push({ opcode: (bytes[at] ?? 0) & 0x0f, payload: bytes.subarray(offset, offset + length) });
    at = offset + length;
  }
  return frames;
}

/**
 * A WebSocket peer on a bare TCP socket that never answers a close frame and
 * never ends its side of the TCP connection: a wedged or hostile client, with
 * which the server's close handshake never completes. Its socket stays open
 * until the server cuts it (or the test ends).
 */
export interface SilentPeer {
  /** Writes frames (see `RawSocket.frame`) in one TCP write. */
  write(...frames: Buffer[]): void;
  /** The frames the server sent after the handshake so far. */
  frames(): ServerFrame[];
  /** Resolves the server's reply to request `id` once it came; rejects after a bounded wait. */
  reply(id: number | string): Promise<Record<string, unknown>>;
  /** Resolves once the server sent a close frame; rejects after a bounded wait. Resolves with its code. */
  closeFrame(): Promise<number>;
  /** True once the server ended or cut its side of the TCP connection. */
  isCut(): boolean;
  /** Resolves once the server ended or cut its side of the TCP connection; rejects after a bounded wait. */
  cut(ms?: number): Promise<void>;
}

/**
 * Opens a silent peer on `url` (a `ws://` URL) with extra request `headers`,
 * resolving once the upgrade answered 101 and the welcome arrived. The socket
 * is destroyed after the test.
 */
export async function openSilentPeer(url: string, headers: Record<string, string> = {}): Promise<SilentPeer> {
  const { hostname, port, pathname, search } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  peers.push(socket);
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  // Set by the data handler; typed by assertion so the check after the await is not narrowed to null.
  let head = null as string | null;
  let wake: () => void = () => undefined;
  let cut = false;
  const gone = new Promise<void>((resolve) => {
    const ended = () => {
      cut = true;
      resolve();
    };
    socket.once('end', ended);
    socket.once('close', ended);
  });
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    if (head === null) {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      head = received.subarray(0, end).toString();
      received = received.subarray(end + 4);
    }
    wake();
  });
  const until = (done: () => boolean, what: string) =>
    within(
      (async () => {
        while (!done()) {
          if (cut) throw new Error(`the connection closed before ${what}`);
          await Promise.race([new Promise<void>((resolve) => (wake = resolve)), gone]);
        }
      })(),
      what,
    );
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.once('connect', () =>
    socket.write(
      `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    ),
  );
  const frames = () => serverFrames(received);
  await until(() => frames().some((frame) => frame.opcode === ServerOpcode.Text), 'the 101 and the welcome');
  if (!head?.startsWith('HTTP/1.1 101 ')) throw new Error(`upgrade refused: ${head ?? ''}`);
  return {
    write: (...written) => void socket.write(Buffer.concat(written)),
    frames,
    reply: async (id) => {
      const find = () =>
        frames()
          .filter((frame) => frame.opcode === ServerOpcode.Text)
          .map((frame) => JSON.parse(frame.payload.toString()) as Record<string, unknown>)
          .find((message) => message.type === 'reply' && message.id === id);
      await until(() => find() !== undefined, `the reply to ${String(id)}`);
      return find() ?? {};
    },
    closeFrame: async () => {
      const find = () => frames().find((frame) => frame.opcode === ServerOpcode.Close);
      await until(() => find() !== undefined, 'the close frame');
      return find()?.payload.readUInt16BE(0) ?? 0;
    },
    isCut: () => cut,
    cut: (ms) => within(gone, 'the server to cut the connection', ms),
  };
}

/** The `lockwire_connections` gauge of the server at `httpUrl`, as scraped. */
export async function connectionsGauge(httpUrl: string): Promise<number> {
  const text = await (await within(fetch(`${httpUrl}/metrics`), 'GET /metrics')).text();
  const value = /^lockwire_connections\{[^}]*\} (\d+)$/m.exec(text)?.[1];
  if (value === undefined) throw new Error('no lockwire_connections in the scrape');
  return Number(value);
}
