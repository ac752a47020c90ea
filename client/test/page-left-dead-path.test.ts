/**
 * A page that leaves while its socket's network path is dead (the browser
 * still sees the socket open) sends its 1000 into nothing: the server never
 * reads it and, once it notices the drop, keeps the session for the grace.
 * The client cannot tell that close from one the server read, so it loses
 * its leases at once but keeps the resume ticket: shown again, the page
 * resumes the session (or gets a fresh one if the server ended it) and
 * releases the holds the resume gave back, which no lease stands for any
 * more, instead of leaving them locked for the grace.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketTransport, LockClient, type TransportFactory } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { abortedWith, fastReconnect, nextEvent, startHarness, within, type Harness } from './fixtures.js';
import { stubPageWindow } from './page-window.js';

const GRACE_MS = 60_000;
let h: Harness;
let proxy: TcpProxy;
let observer: LockClient;
/** The window the transport listens to for `pagehide`. */
let page: EventTarget;
/** Every socket the page opened, in order. */
let sockets: WebSocket[];

/** ws as the page's `WebSocket`, recording each socket so the test can make the browser give one up. */
class RecordingWebSocket extends WebSocket {
  constructor(url: string) {
    super(url);
    sockets.push(this);
  }
}

beforeEach(async () => {
  h = await startHarness({ sessionGrace: GRACE_MS });
  proxy = await startTcpProxy(h.server.port);
  observer = await h.connect();
  sockets = [];
  page = stubPageWindow(RecordingWebSocket);
});

afterEach(async () => {
  await h.close();
  await proxy.close();
  vi.unstubAllGlobals();
});

/** The observer's acquire of `page:held` waits in the key's queue. */
async function observerQueued(): Promise<void> {
  await expect.poll(async () => (await observer.status('page:held')).queue.length, { timeout: 2000 }).toBe(1);
}

/**
 * The path dies silently (the browser's socket still open), then the page
 * leaves: its 1000 goes nowhere, and the browser gives the socket up (1006),
 * as when the page is frozen before any answer. The client reports its own
 * page-left close.
 */
async function leaveOverDeadPath(client: LockClient): Promise<void> {
  proxy.hold();
  const disconnect = nextEvent(client, 'disconnect');
  page.dispatchEvent(new Event('pagehide'));
  sockets[0]?.terminate();
  expect(await disconnect).toMatchObject({ code: 1000, pageLeft: true });
}

describe('a page that leaves on a dead network path, with session grace on', () => {
  it('resumes its session when shown again and releases the locks the server kept, so the next waiter gets them', async () => {
    const browser = createWebSocketTransport();
    const urls: string[] = [];
    // The first connection goes through the proxy; the page shown again reaches the server directly.
    const transport: TransportFactory = (url, handlers) => {
      urls.push(url);
      const direct = new URL(url);
      if (urls.length > 1) direct.port = String(h.server.port);
      return browser(direct.toString(), handlers);
    };
    const client = await h.connectTo(proxy.url(h.server.url), { transport, reconnect: fastReconnect });
    const before = client.session;
    const lease = await client.acquire('page:held');
    const waiting = observer.acquire('page:held');
    await observerQueued();

    await leaveOverDeadPath(client);
    // The lease is lost at once, as for any page-left close: the client cannot know the server kept the lock.
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'connection_lost' });
    // The server notices the drop (a reset, as its heartbeat would): with grace, it keeps the session.
    proxy.cut();

    const reconnected = await within(nextEvent(client, 'reconnect'));
    expect(reconnected).toMatchObject({ previousSession: before, resumed: true });
    expect(new URL(urls[1] ?? '').searchParams.has('resume')).toBe(true);
    // The resume gave the hold back with no lease standing for it: the client releases it and the waiter gets it.
    expect((await within(waiting, 2000, 'the waiter to be granted'))?.held).toBe(true);
    expect([...client.leases.keys()]).toEqual([]);
  });

  it('ends the session the server kept when closed before it reconnects', async () => {
    const client = await h.connectTo(proxy.url(h.server.url), {
      transport: createWebSocketTransport(),
      // No reconnect attempt within the test: only close() reaches the server again.
      reconnect: { ...fastReconnect, initialDelay: GRACE_MS, maxDelay: GRACE_MS },
    });
    await client.acquire('page:held');
    const waiting = observer.acquire('page:held');
    await observerQueued();

    await leaveOverDeadPath(client);
    proxy.cut();
    proxy.unblock();

    await within(client.close());
    expect(client.state).toBe('closed');
    expect((await within(waiting, 2000, 'the waiter to be granted'))?.held).toBe(true);
  });
});
