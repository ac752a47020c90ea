import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import type { LockStore } from '../src/store.js';
import { connectWith, startServer } from './auth-harness.js';
import { upgradeStatusLine, within, type Frame } from './server-harness.js';

/** The query string that resumes the session of `welcome`. */
function resumeQuery(welcome: Frame): string {
  return `?session=${encodeURIComponent(String(welcome.session))}&resume=${encodeURIComponent(String(welcome.resume))}`;
}

describe('a resume of a session whose connection is still open', () => {
  it('refused by the handshake (400) leaves the session resumable: its open connection is closed 1011, not 4001, and a resume gets the session and its lock back', async () => {
    const { server } = await startServer({ sessionGrace: 60_000 });
    const holder = await connectWith(server.url, null);
    const grant = await holder.client.request({ op: 'acquire', id: 1, key: 'k' });
    expect(grant).toMatchObject({ acquired: true });
    const waiter = await connectWith(server.url, null);
    waiter.client.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.client.next((f) => f.type === 'queued', 'the waiter queued');

    // The resume names the session by its secret, but its Sec-WebSocket-Key is malformed.
    const query = resumeQuery(holder.welcome);
    expect(await upgradeStatusLine(server.port, `/v1${query}`, 'not-a-key')).toBe('HTTP/1.1 400 Bad Request');
    // 4001 would tell the holder's client its session lives on elsewhere, which it does not: it would not resume.
    expect((await within(holder.client.closed, 'the open connection to close')).code).toBe(1011);

    const again = await connectWith(server.url + query, null);
    expect(again.welcome).toMatchObject({ session: holder.welcome.session, resumed: true, held: [{ key: 'k', token: grant.token }] });
    expect(waiter.client.inbox.filter((f) => f.id === 1)).toEqual([]);
    expect(await again.client.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
    expect(await waiter.client.reply(1)).toMatchObject({ acquired: true });
  });

  it('that cannot read the store is refused 503 and leaves the session resumable with the same secret: its open connection is closed 1011, not 4001', async () => {
    const clock = createManualClock(Date.now());
    const inner = createMemoryStore({ clock });
    let storeDown = false;
    // What a resume reads, and only that, fails while the store is down.
    const store: LockStore = Object.assign(Object.create(inner) as LockStore, {
      start: (listener: Parameters<LockStore['start']>[0]) => inner.start(listener),
      status: (...args: Parameters<LockStore['status']>) => (storeDown ? Promise.reject(new Error('store down')) : inner.status(...args)),
    });
    const { server } = await startServer({ clock, store, sessionGrace: 60_000 });
    const holder = await connectWith(server.url, null);
    const grant = await holder.client.request({ op: 'acquire', id: 1, key: 'k' });
    const query = resumeQuery(holder.welcome);

    storeDown = true;
    // Not a fresh session, which would leave the old one holding its locks for the rest of its grace.
    expect(await upgradeStatusLine(server.port, `/v1${query}`)).toBe('HTTP/1.1 503 Service Unavailable');
    expect((await within(holder.client.closed, 'the open connection to close')).code).toBe(1011);

    storeDown = false;
    const again = await connectWith(server.url + query, null);
    expect(again.welcome).toMatchObject({ session: holder.welcome.session, resumed: true, held: [{ key: 'k', token: grant.token }] });
  });
});
