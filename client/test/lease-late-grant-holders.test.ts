import { afterEach, describe, expect, it } from 'vitest';
import { LockClient, LockError } from '@lockwire/client';
import { createLockServer, createMemoryStore, type LockServer } from '@lockwire/server';
import { gatedStore, nextEvent, recordingTransport, within } from './fixtures.js';

/** What a call settled with: its value, or the error it rejected with (handled from the start). */
function outcomeOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    (value) => ({ resolved: value }),
    (error: unknown) => error,
  );
}

describe('a holder whose grant arrives after its hold was gone', () => {
  const servers: LockServer[] = [];
  const clients: LockClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  /**
   * `a` (whose sent frames are recorded) holds k through `acquire()`; `start`
   * makes the next acquire of k, which the server runs (a re-acquire of that
   * hold, same token) and whose reply is held back until `open()`.
   */
  async function heldBackReacquire<T>(start: (a: LockClient) => Promise<T>) {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    const { transport, sent } = recordingTransport();
    const a = await LockClient.connect(server.url, { reconnect: false, keepalive: false, transport });
    const b = await LockClient.connect(server.url, { reconnect: false, keepalive: false });
    clients.push(a, b);
    const first = await a.acquire('k');
    if (!first) throw new Error('not granted');
    const gate = holdNextAcquire();
    const call = start(a);
    await gate.ran;
    const releasesSent = () => sent.filter((frame) => frame.op === 'release').length;
    return { a, b, first, open: gate.open, call, releasesSent };
  }

  describe('withLock', () => {
    /** A withLock of k whose callback records that it ran. */
    const withLockOfK = (a: LockClient, ran: { called: boolean }) =>
      outcomeOf(
        a.withLock('k', () => {
          ran.called = true;
          return 'ran';
        }),
      );

    it('rejects with the loss\'s LockError, never calling back nor releasing, when its grant was stolen before the reply', async () => {
      const ran = { called: false };
      const { a, b, open, call, releasesSent } = await heldBackReacquire((a) => withLockOfK(a, ran));
      const lost = nextEvent(a, 'lost');
      const thief = await b.acquire('k', { steal: true });
      await lost;
      open();
      const outcome = await within(call, 2000, 'the withLock');
      expect(outcome).toBeInstanceOf(LockError);
      expect(outcome).toMatchObject({ code: 'stolen' });
      expect(ran.called).toBe(false);
      expect(releasesSent()).toBe(0);
      const status = await b.status('k');
      expect(status.holders.map((holder) => [holder.session, holder.token])).toEqual([[b.session, thief?.token]]);
    });

    it('rejects, never calling back, and leaves the newer lease held when its grant is older than that lease', async () => {
      const ran = { called: false };
      const { a, b, open, call, releasesSent } = await heldBackReacquire((a) => withLockOfK(a, ran));
      const revoked = nextEvent(a, 'lost');
      expect(await b.revoke('k')).toBe(1);
      await within(revoked, 2000, 'the revoke');
      // A steal is sent at once, beside the re-acquire still in flight (another acquire of k would wait for that one).
      const newer = await within(a.acquire('k', { steal: true }), 2000, 'the new acquire');
      if (!newer) throw new Error('not granted');
      open();
      expect(await within(call, 2000, 'the withLock')).toMatchObject({ code: 'revoked' });
      expect(ran.called).toBe(false);
      expect(releasesSent()).toBe(0);
      expect(newer.held).toBe(true);
      expect(a.leases.get('k')).toBe(newer);
      const status = await a.status('k');
      expect(status.heldByYou).toBe(true);
      expect(status.holders.map((holder) => holder.token)).toEqual([newer.token]);
    });
  });

  describe('a Web Lock request', () => {
    /** A request of k whose callback records that it ran. */
    const requestOfK = (a: LockClient, ran: { called: boolean }, options: { ifAvailable?: boolean } = {}) =>
      outcomeOf(
        a.locks.request('k', options, () => {
          ran.called = true;
          return 'ran';
        }),
      );

    for (const ifAvailable of [false, true]) {
      const which = ifAvailable ? 'an ifAvailable request' : 'a waiting request';
      it(`${which} rejects with an AbortError, never calling back, when granted a hold revoked before the reply`, async () => {
        const ran = { called: false };
        const { a, b, open, call } = await heldBackReacquire((a) => requestOfK(a, ran, { ifAvailable }));
        const revoked = nextEvent(a, 'lost');
        expect(await b.revoke('k')).toBe(1);
        await within(revoked, 2000, 'the revoke');
        open();
        const outcome = await within(call, 2000, 'the request');
        expect(outcome).toBeInstanceOf(DOMException);
        expect(outcome).toMatchObject({ name: 'AbortError' });
        expect(ran.called).toBe(false);
        expect((await a.locks.query()).held.filter((lock) => lock.name === 'k')).toEqual([]);
        expect((await a.status('k')).heldByYou).toBe(false);
      });
    }

    it('asks the server for a hold of its own in the next request after a grant that arrived revoked', async () => {
      const { a, b, first, open, call } = await heldBackReacquire((a) => outcomeOf(a.locks.request('k', () => 'ran')));
      const revoked = nextEvent(a, 'lost');
      expect(await b.revoke('k')).toBe(1);
      await within(revoked, 2000, 'the revoke');
      open();
      await within(call, 2000, 'the request');
      const seen = await within(
        a.locks.request('k', async (lock) => ({ token: lock?.token, heldByYou: (await a.status('k')).heldByYou })),
        2000,
        'the next request',
      );
      expect(seen.heldByYou).toBe(true);
      expect(seen.token).toBeGreaterThan(first.token);
    });

    it('rejects with an AbortError when the lease API releases the hold its callback runs under, and query() shows the hold gone', async () => {
      const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
      servers.push(server);
      const a = await LockClient.connect(server.url, { reconnect: false, keepalive: false });
      const b = await LockClient.connect(server.url, { reconnect: false, keepalive: false });
      clients.push(a, b);
      const first = await a.acquire('k');
      if (!first) throw new Error('not granted');
      let started: () => void = () => undefined;
      const running = new Promise<void>((resolve) => (started = resolve));
      let finish: () => void = () => undefined;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      // Granted the name's lease-API hold (the same session's hold of k).
      const request = outcomeOf(
        a.locks.request('k', async () => {
          started();
          await finished;
          return 'ran';
        }),
      );
      await within(running, 2000, 'the callback');
      await within(first.release(), 2000, 'the release');
      // Read while the key is free: the server lists no holder, so only a's own record could show one.
      const shown = (await a.locks.query()).held.filter((lock) => lock.name === 'k');
      // The server let go of the hold: another client gets it at once.
      expect((await b.acquire('k', { acquireTimeout: 0 }))?.held).toBe(true);
      finish();
      const outcome = await within(request, 2000, 'the request');
      expect(shown).toEqual([]);
      expect(outcome).toBeInstanceOf(DOMException);
      expect(outcome).toMatchObject({ name: 'AbortError' });
    });
  });
});
