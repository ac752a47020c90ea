import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { within } from './fixtures.js';

/**
 * A server that welcomed the client and then answers nothing it was asked
 * to wait for: `acquire`, `wait` and `cancel` stay unanswered until the test
 * replies (a store that hangs, a relay that drops the client's frames).
 */
let fake: FakeServer;
let client: LockClient;
let server: FakeConnection;

beforeEach(async () => {
  fake = await startFakeServer({ respond: (frame) => (frame.op === 'cancel' ? undefined : defaultResponse(frame)) });
  client = await LockClient.connect(fake.url, { reconnect: false });
  server = await fake.connection(0);
});
afterEach(async () => {
  await client.close();
  await fake.close();
});

/** The ops the client sent, in order. */
function ops(): unknown[] {
  return server.received.map((frame) => frame.op);
}

/** Replies to `acquire` with a grant of a new token. */
function grant(acquire: Frame, token = 7): void {
  server.reply(acquire.id, { acquired: true, token, expiresAt: null });
}

describe('an abort while queued, when the server does not answer', () => {
  it('rejects acquire() with the signal reason at once, after sending cancel', async () => {
    const controller = new AbortController();
    const attempt = client.acquire('k', { signal: controller.signal });
    await server.nextRequest('acquire');
    const reason = new Error('gave up');
    controller.abort(reason);

    await expect(within(attempt, 2000, 'the aborted acquire')).rejects.toBe(reason);
    await server.nextRequest('cancel');
    expect(ops()).toEqual(['acquire', 'cancel']);
  });

  it('a grant that comes after the abort already rejected is released, and leaves no lease', async () => {
    const controller = new AbortController();
    const attempt = client.acquire('k', { signal: controller.signal });
    const acquire = await server.nextRequest('acquire');
    const reason = new Error('gave up');
    controller.abort(reason);
    await expect(within(attempt)).rejects.toBe(reason);
    const cancel = await server.nextRequest('cancel');

    grant(acquire);
    server.reply(cancel.id, { cancelled: false });
    expect(await server.nextRequest('release')).toMatchObject({ key: 'k' });
    await client.ping();
    expect(client.leases.size).toBe(0);
  });

  it('a new acquire of the key waits until the server answered the aborted one, so a late grant cannot release it', async () => {
    const controller = new AbortController();
    const first = client.acquire('k', { signal: controller.signal });
    const acquire = await server.nextRequest('acquire');
    controller.abort(new Error('gave up'));
    await expect(within(first)).rejects.toThrow('gave up');
    const cancel = await server.nextRequest('cancel');

    const second = client.acquire('k');
    await client.ping();
    // Sent now, the server would answer it with the hold the late grant made, which the client then releases.
    expect(ops()).toEqual(['acquire', 'cancel', 'ping']);

    grant(acquire);
    server.reply(cancel.id, { cancelled: false });
    await server.nextRequest('release');
    const again = await server.nextRequest('acquire');
    grant(again, 8);
    const lease = await within(second);
    expect(lease).toMatchObject({ key: 'k', token: 8, held: true });
    expect(client.leases.get('k')).toBe(lease);
  });

  it('rejects waitForLock() with the signal reason at once', async () => {
    const controller = new AbortController();
    const waiting = client.waitForLock('k', { signal: controller.signal });
    await server.nextRequest('wait');
    controller.abort(new Error('stop waiting'));

    await expect(within(waiting, 2000, 'the aborted wait')).rejects.toThrow('stop waiting');
    await server.nextRequest('cancel');
  });

  it('rejects a Web Locks request with the signal reason at once, and its callback is never called', async () => {
    const controller = new AbortController();
    let called = false;
    const request = client.locks.request('k', { signal: controller.signal }, () => {
      called = true;
    });
    const acquire = await server.nextRequest('acquire');
    const reason = new DOMException('navigated away', 'AbortError');
    controller.abort(reason);

    await expect(within(request, 2000, 'the aborted request')).rejects.toBe(reason);
    const cancel = await server.nextRequest('cancel');
    grant(acquire);
    server.reply(cancel.id, { cancelled: false });
    expect(await server.nextRequest('release')).toMatchObject({ key: 'k' });
    expect(called).toBe(false);
  });

  it("a Web Locks request made after an aborted one of the same name asks the server once the aborted one's acquire was answered", async () => {
    const controller = new AbortController();
    const aborted = client.locks.request('k', { signal: controller.signal }, () => 'first');
    const acquire = await server.nextRequest('acquire');
    controller.abort(new Error('gave up'));
    await expect(within(aborted)).rejects.toThrow('gave up');
    const next = client.locks.request('k', (lock) => lock?.token);
    const cancel = await server.nextRequest('cancel');
    await client.ping();
    expect(ops()).toEqual(['acquire', 'cancel', 'ping']);

    server.send({ type: 'reply', id: acquire.id, ok: false, error: { code: 'cancelled', message: 'cancelled' } });
    server.reply(cancel.id, { cancelled: true });
    grant(await server.nextRequest('acquire'), 9);
    expect(await within(next)).toBe(9);
  });
});
