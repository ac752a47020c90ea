/**
 * A close with 1000 that a proxy sends to the client (a restart, an idle
 * timeout) while it only drops its link to the server: the server saw a
 * drop, not the client's 1000, and keeps the session and its locks for the
 * grace. The client must take it as the drop it is and resume the session
 * (or, on `close()`, end it), not take it for the end of the session and
 * leave the old holds blocking their keys for the grace. Node client (ws),
 * no page; the server runs with a minute of grace on a manual clock.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { LockClient } from '@lockwire/client';
import { fastReconnect, nextEvent, startHarness, within, type Harness } from './fixtures.js';

const GRACE_MS = 60_000;

interface Relay {
  url: string;
  /** The relay restarts: each client gets a close with 1000, each link to the server is cut without a frame. */
  restart(): void;
  close(): Promise<void>;
}

/** A WebSocket relay in front of `target`, passing frames both ways and a client's closing code on to the server. */
async function startRelay(target: string): Promise<Relay> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const links: { socket: WebSocket; upstream: WebSocket }[] = [];
  wss.on('connection', (socket, request) => {
    const upstream = new WebSocket(new URL(request.url ?? '/v1', target).toString());
    const early: string[] = [];
    upstream.on('open', () => {
      for (const frame of early.splice(0)) upstream.send(frame);
    });
    upstream.on('message', (data) => socket.send(String(data)));
    upstream.on('close', (code) => socket.close(code === 1005 || code === 1006 ? 1001 : code));
    upstream.on('error', () => undefined);
    socket.on('message', (data) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(String(data));
      else early.push(String(data));
    });
    // A client's 1000 reaches the server, which ends the session on it.
    socket.on('close', (code, reason) => {
      const forward = () => (code === 1000 || code === 1001 ? upstream.close(code, reason) : upstream.terminate());
      if (upstream.readyState === WebSocket.CONNECTING) upstream.once('open', forward);
      else forward();
    });
    socket.on('error', () => undefined);
    links.push({ socket, upstream });
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1`,
    restart() {
      for (const { socket, upstream } of links.splice(0)) {
        upstream.removeAllListeners('close');
        upstream.terminate();
        socket.close(1000, 'proxy restart');
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { socket, upstream } of links) {
          upstream.terminate();
          socket.terminate();
        }
        wss.close(() => resolve());
      }),
  };
}

let h: Harness;
let relay: Relay;
let observer: LockClient;

beforeEach(async () => {
  h = await startHarness({ sessionGrace: GRACE_MS });
  relay = await startRelay(h.server.url);
  observer = await h.connect();
});

afterEach(async () => {
  await h.close();
  await relay.close();
});

describe('a close with 1000 from a proxy, with session grace on', () => {
  it('is a drop the client resumes its session from, its leases kept', async () => {
    const client = await h.connectTo(relay.url, { reconnect: fastReconnect });
    const before = client.session;
    const lease = await client.acquire('proxy:k');
    const disconnect = nextEvent(client, 'disconnect');
    const reconnected = nextEvent(client, 'reconnect');

    relay.restart();
    expect(await disconnect).toEqual({ code: 1000, reason: 'proxy restart', byClient: false, reconnecting: true });
    expect(await reconnected).toMatchObject({ session: before, previousSession: before, resumed: true });
    expect({ held: lease?.held, aborted: lease?.signal.aborted, leases: [...client.leases.keys()] }).toEqual({
      held: true,
      aborted: false,
      leases: ['proxy:k'],
    });
    expect((await observer.status('proxy:k')).holders.map((holder) => holder.session)).toEqual([before]);
    // The resumed hold is the client's own: once released, its next acquire of the key is granted at once.
    await lease?.release();
    expect((await client.acquire('proxy:k', { acquireTimeout: 0 }))?.held).toBe(true);
  });

  it('close() while it waits to reconnect ends the session the server keeps, so its lock goes to the next waiter', async () => {
    // No reconnect attempt within the test: only close() reaches the server.
    const client = await h.connectTo(relay.url, { reconnect: { initialDelay: GRACE_MS, maxDelay: GRACE_MS, jitter: 0 } });
    const lease = await client.acquire('proxy:c');
    const waiting = observer.acquire('proxy:c');
    await expect.poll(async () => (await observer.status('proxy:c')).queue.length, { timeout: 2000 }).toBe(1);
    const disconnect = nextEvent(client, 'disconnect');

    relay.restart();
    expect(await disconnect).toMatchObject({ code: 1000, reconnecting: true });
    // Parked for the resume, as after any drop the server keeps the session of.
    expect(lease?.held).toBe(true);
    await within(client.close(), 3000);
    expect((await within(waiting, 2000, 'the waiter to be granted once the client closed'))?.held).toBe(true);
    expect(lease?.held).toBe(false);
  });
});
