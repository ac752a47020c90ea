/**
 * A page that leaves (`pagehide`, also into the back/forward cache) closes
 * its connection through the browser transport with 1000, which ends its
 * session on the server at once, grace or not. The client must take that
 * close as the end of its leases too, at once; it still resumes with its
 * ticket (answered with a fresh session) in case the 1000 never arrived.
 * Driven here in Node through the browser transport itself, with ws as the
 * page's `WebSocket` and an event target as the window that fires
 * `pagehide`; the server runs with a minute of session grace on a manual
 * clock that never moves, and the client reaches it through a proxy that
 * plays a server the page cannot reach once it is shown again.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createWebSocketTransport, LockClient, type TransportFactory } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { abortedWith, fastReconnect, holding, nextEvent, startHarness, within, type Harness } from './fixtures.js';
import { stubPageWindow } from './page-window.js';

const GRACE_MS = 60_000;
const PAGE_LEFT = { code: 1000, reason: 'page left', byClient: false, pageLeft: true };

let h: Harness;
let proxy: TcpProxy;
let observer: LockClient;
/** The window the transport listens to for `pagehide`. */
let page: EventTarget;

beforeEach(async () => {
  h = await startHarness({ sessionGrace: GRACE_MS });
  proxy = await startTcpProxy(h.server.port);
  observer = await h.connect();
  // ws implements the browser's addEventListener/MessageEvent/CloseEvent surface, standing in for a page's WebSocket.
  page = stubPageWindow(WebSocket);
});

afterEach(async () => {
  // The clients' sockets still reach for the window as they close.
  await h.close();
  await proxy.close();
  vi.unstubAllGlobals();
});

/** A client on the browser transport through the proxy, and the URL of every connection it opened. */
async function connectPage(reconnect: Record<string, number>): Promise<{ client: LockClient; urls: string[] }> {
  const urls: string[] = [];
  const browser = createWebSocketTransport();
  const transport: TransportFactory = (url, handlers) => {
    urls.push(url);
    return browser(url, handlers);
  };
  const client = await h.connectTo(proxy.url(h.server.url), { transport, reconnect: { ...fastReconnect, ...reconnect } });
  return { client, urls };
}

/** The page leaves: its `pagehide`, on which the transport closes its socket with 1000. */
function leave(): void {
  page.dispatchEvent(new Event('pagehide'));
}

describe('a page that left, with session grace on', () => {
  it('loses its leases, waiting acquires and Web Locks at once when the server cannot be reached, not after the grace', async () => {
    const { client } = await connectPage({});
    const lease = await client.acquire('page:held');
    await observer.acquire('page:taken');
    const queued = client.acquire('page:taken').catch((error: unknown) => error);
    const web = await holding(client, 'page:web', new Promise(() => undefined));
    await client.ping();
    const waiting = observer.acquire('page:held');
    await expect.poll(async () => (await observer.status('page:held')).queue.length, { timeout: 2000 }).toBe(1);
    const disconnect = nextEvent(client, 'disconnect');
    // Shown again, the page cannot reach the server: every attempt to connect is refused.
    proxy.block();

    leave();
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'connection_lost', close: PAGE_LEFT });
    expect(await within(queued)).toMatchObject({ code: 'connection_lost', close: PAGE_LEFT });
    expect(await within(web.done)).toMatchObject({ code: 'connection_lost', close: PAGE_LEFT });
    expect(await disconnect).toEqual({ ...PAGE_LEFT, reconnecting: true });
    expect(lease?.held).toBe(false);
    expect([...client.leases.keys()]).toEqual([]);
    // The server ended the session as the page left: the waiter has the lock.
    expect((await within(waiting))?.token).toBeGreaterThan(0);
    expect(client.state).not.toBe('closed');
  });

  it('reconnects with a resume that the server, which ended the session, answers with a fresh session', async () => {
    const { client, urls } = await connectPage({});
    const before = client.session;
    await client.acquire('page:held');
    proxy.block();
    const accepted = proxy.accepted;
    leave();
    // Refused attempts: the page is shown again while the server cannot be reached.
    await within(
      new Promise<void>((resolve) => {
        const off = client.on('state', () => {
          if (proxy.accepted - accepted < 2) return;
          off();
          resolve();
        });
      }),
    );
    const reconnected = nextEvent(client, 'reconnect');
    proxy.unblock();

    expect(await reconnected).toMatchObject({ previousSession: before, resumed: false });
    expect(client.session).not.toBe(before);
    expect(urls.length).toBeGreaterThan(2);
    // Every attempt after the page left carried the ticket: the client cannot tell whether its 1000 arrived.
    for (const url of urls.slice(1)) {
      expect(new URL(url).searchParams.get('session'), url).toBe(before);
      expect(new URL(url).searchParams.has('resume'), url).toBe(true);
    }
    expect(h.server.sessionCount()).toBe(2);
    const again = await client.acquire('page:held', { acquireTimeout: 0 });
    expect(again?.held).toBe(true);
  });

  it('loses its leases at once when it leaves as its resume connects, and then gets a fresh session for its next resume', async () => {
    const urls: string[] = [];
    const browser = createWebSocketTransport();
    let resumes = 0;
    const transport: TransportFactory = (url, handlers) => {
      urls.push(url);
      const resuming = new URL(url).searchParams.has('resume');
      let closing = false;
      return browser(url, {
        ...handlers,
        open: () => {
          if (resuming && resumes++ === 0) {
            // The server gave the session back to this socket, and the page leaves before the welcome is
            // read; shown again, the page cannot reach the server.
            closing = true;
            proxy.block();
            leave();
          }
          handlers.open();
        },
        // A browser dispatches no message once close() was called: the resume's welcome is never read.
        message: (text) => {
          if (!closing) handlers.message(text);
        },
      });
    };
    const client = await h.connectTo(proxy.url(h.server.url), { transport, reconnect: fastReconnect });
    const before = client.session;
    const lease = await client.acquire('page:held');
    const waiting = observer.acquire('page:held');
    await expect.poll(async () => (await observer.status('page:held')).queue.length, { timeout: 2000 }).toBe(1);

    // A drop: the server keeps the session for the grace, and the client resumes it.
    proxy.cut();
    // The server ended the session on the page's 1000 after the resume took it: the waiter has the lock.
    expect((await within(waiting, 2000, 'the waiter to be granted as the page left'))?.held).toBe(true);
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'connection_lost', close: PAGE_LEFT });
    expect({ resumes, held: lease?.held, leases: [...client.leases.keys()] }).toEqual({ resumes: 1, held: false, leases: [] });

    const reconnected = nextEvent(client, 'reconnect');
    proxy.unblock();
    expect(await reconnected).toMatchObject({ previousSession: before, resumed: false });
    // Every attempt after the drop resumed, the one the page left on and those after it.
    expect(urls.length).toBeGreaterThan(2);
    expect(urls.slice(1).every((url) => new URL(url).searchParams.has('resume'))).toBe(true);
    expect((await client.acquire('page:other', { acquireTimeout: 0 }))?.held).toBe(true);
  });

  it('close() after the page left makes one attempt to end the session, in case its 1000 never reached the server', async () => {
    // No reconnect attempt within the test: only close() could open a connection.
    const { client } = await connectPage({ initialDelay: GRACE_MS, maxDelay: GRACE_MS });
    const lease = await client.acquire('page:held');
    const disconnect = nextEvent(client, 'disconnect');
    leave();
    await disconnect;
    const accepted = proxy.accepted;

    await within(client.close());
    expect(proxy.accepted - accepted).toBe(1);
    expect(client.state).toBe('closed');
    expect(await abortedWith(lease?.signal ?? AbortSignal.abort())).toMatchObject({ code: 'connection_lost', close: PAGE_LEFT });
  });
});
