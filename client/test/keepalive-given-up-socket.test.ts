import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createWsTransport, LockClient, type TransportFactory } from '@lockwire/client';
import { startTcpProxy } from '../../test/helpers/tcp-proxy.js';
import { nextEvent, startHarness, within } from './fixtures.js';

/** Resolves once `socket` closed (bounded): ws waits 30 s for the peer's close frame after a polite close. */
function socketClosed(socket: WebSocket | undefined, ms: number): Promise<void> {
  const closed = new Promise<void>((resolve) => {
    if (!socket || socket.readyState === WebSocket.CLOSED) resolve();
    else socket.once('close', () => resolve());
  });
  return within(closed, ms, 'the given-up socket to close');
}

/**
 * A server that completes the WebSocket upgrade and then says nothing and
 * answers no close frame: a welcome that never comes. It reads what the
 * client sends, to report the code of the client's closing frame.
 */
async function startSilentUpgrader(): Promise<{ url: string; closeCode: Promise<number>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let reportCode = (_code: number) => {};
  const closeCode = new Promise<number>((resolve) => (reportCode = resolve));
  const server = createServer((socket) => {
    sockets.add(socket);
    let head = '';
    let frames = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (!head.endsWith('\r\n\r\n')) {
        const text = chunk.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        head += end === -1 ? text : text.slice(0, end + 4);
        if (end === -1) return;
        const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1] ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
        chunk = chunk.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      }
      frames = Buffer.concat([frames, chunk]);
      // A client's close frame: opcode 8, a masked payload of at least the 2-byte code (short length form).
      if (frames.length >= 8 && ((frames[0] ?? 0) & 0x0f) === 8) {
        const mask = frames.subarray(2, 6);
        reportCode((((frames[6] ?? 0) ^ (mask[0] ?? 0)) << 8) | ((frames[7] ?? 0) ^ (mask[1] ?? 0)));
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1`,
    closeCode,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('the socket of a connection the client gave up on', () => {
  it('is closed once client.close() resolved after the keepalive took the connection for dead', async () => {
    const h = await startHarness();
    const proxy = await startTcpProxy(h.server.port);
    const sockets: WebSocket[] = [];
    try {
      const client = await LockClient.connect(proxy.url(h.server.url), {
        transport: createWsTransport({ onSocket: (socket) => sockets.push(socket) }),
        reconnect: false,
        keepalive: { interval: 50, timeout: 50 },
      });
      proxy.hold();
      await nextEvent(client, 'disconnect', 3000);
      await within(client.close(), 3000, 'client.close()');
      expect(client.state).toBe('closed');
      expect(sockets).toHaveLength(1);
      await socketClosed(sockets[0], 2000);
    } finally {
      for (const socket of sockets) socket.terminate();
      await proxy.close();
      await h.close();
    }
  });

  it('is closed with close(4000) on a custom transport without abort, which stays optional', async () => {
    const h = await startHarness();
    const proxy = await startTcpProxy(h.server.port);
    const inner = createWsTransport();
    const closes: unknown[][] = [];
    const transport: TransportFactory = (url, handlers) => {
      const socket = inner(url, handlers);
      return {
        send: (text) => socket.send(text),
        close(code, reason) {
          closes.push([code, reason]);
          socket.close(code, reason);
        },
      };
    };
    try {
      const client = await h.connectTo(proxy.url(h.server.url), {
        transport,
        reconnect: false,
        keepalive: { interval: 50, timeout: 50 },
      });
      proxy.hold();
      await nextEvent(client, 'disconnect', 3000);
      expect(closes).toEqual([[4000, 'keepalive timeout']]);
    } finally {
      await proxy.close();
      await h.close();
    }
  });

  it('is closed, after its closing frame went out, soon after a connect fails for want of a welcome', async () => {
    const upgrader = await startSilentUpgrader();
    const sockets: WebSocket[] = [];
    try {
      const connecting = LockClient.connect(upgrader.url, {
        transport: createWsTransport({ onSocket: (socket) => sockets.push(socket) }),
        reconnect: false,
        keepalive: { interval: 50, timeout: 50 },
      });
      await expect(within(connecting, 3000, 'connect to fail')).rejects.toMatchObject({
        code: 'connection_closed',
        close: { code: 1006 },
      });
      expect(sockets).toHaveLength(1);
      // The upgrade completed: the socket was open, not still connecting (which ws drops at once anyway).
      expect(sockets[0]?.readyState).not.toBe(WebSocket.CONNECTING);
      await socketClosed(sockets[0], 2000);
      // The closing frame still went out first: 4000, which a server takes for a drop, not for a goodbye.
      expect(await within(upgrader.closeCode, 2000, "the client's closing frame")).toBe(4000);
    } finally {
      for (const socket of sockets) socket.terminate();
      await upgrader.close();
    }
  });
});
