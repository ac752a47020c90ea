import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { graceWelcome, nextEvent, within } from './fixtures.js';
import { pauseGate } from './pause-gate.js';

vi.mock('../src/reconnect.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/reconnect.js')>();
  const { pauseGate: gate } = await import('./pause-gate.js');
  return { ...actual, pause: gate.wrap(actual.pause) };
});

/**
 * A release the server refused that the client sends again in the
 * background (after `withLock`, of a Web Lock whose callbacks are done):
 * the session holds the key until a release is accepted, so a new acquire
 * of the key sent before then would be answered with that very hold (same
 * token, the lease the client already has), which the release asked again
 * then drops. The backoff waits are held by the pause gate: a test decides
 * when the release is asked again.
 */
let fake: FakeServer;
let client: LockClient;
let server: FakeConnection;

/**
 * A fake server that leaves acquire and release to the test; `welcome`
 * gives the n-th connection's extra welcome fields.
 */
async function setup(
  options: ConnectOptions = { reconnect: false },
  welcome: (n: number) => Record<string, unknown> = () => ({}),
) {
  pauseGate.holding = true;
  fake = await startFakeServer({
    welcome,
    respond: (frame) => (frame.op === 'release' ? undefined : defaultResponse(frame)),
  });
  client = await LockClient.connect(fake.url, options);
  server = await fake.connection(0);
}
afterEach(async () => {
  pauseGate.reset();
  await client.close();
  await fake.close();
});

/** Refuses request `frame` with `code`. */
function refuse(frame: Frame, code = 'rate_limited'): void {
  server.send({ type: 'reply', id: frame.id, ok: false, error: { code, message: 'not now' } });
}

/** Answers the next acquire of the current connection with a grant of `token`. */
async function grantNext(token: number): Promise<Frame> {
  const acquire = await server.nextRequest('acquire');
  server.reply(acquire.id, { acquired: true, token, expiresAt: null });
  return acquire;
}

/** The acquires the current connection got so far. */
function acquiresSent(): Frame[] {
  return server.received.filter((frame) => frame.op === 'acquire');
}

/**
 * Runs a `withLock` of `k` granted token 7 whose release the server
 * refuses; resolves once it settled, with the backoff wait before the
 * release is asked again (held).
 */
async function withLockReleaseRefused() {
  const done = client.withLock('k', () => 'done');
  await grantNext(7);
  refuse(await server.nextRequest('release'));
  expect(await within(done)).toBe('done');
  return pauseGate.next();
}

/** Lets the held retry ask again and accepts that release. */
async function acceptRetry(retry: { resume(): void }): Promise<void> {
  retry.resume();
  const release = await server.nextRequest('release');
  expect(release).toMatchObject({ key: 'k' });
  server.reply(release.id, { released: true });
}

describe('a release the client sends again after the server refused it', () => {
  it('holds a new acquire() of the key back until the release is accepted, so it gets a hold of its own', async () => {
    await setup();
    const retry = await withLockReleaseRefused();
    const second = client.acquire('k');
    second.catch(() => undefined);

    // Sent now, the acquire would be a re-acquire answered with token 7, which the release asked again then drops.
    await client.ping();
    expect(acquiresSent()).toHaveLength(1);
    await acceptRetry(retry);
    await grantNext(8);
    const lease = await within(second);
    expect(lease).toMatchObject({ key: 'k', token: 8, held: true });
    expect(client.leases.get('k')).toBe(lease);
  });

  it('holds the next withLock of the key back until the release is accepted, and it releases the hold it got', async () => {
    await setup();
    const retry = await withLockReleaseRefused();
    const tokens: number[] = [];
    const second = client.withLock('k', (lease) => tokens.push(lease.token));
    second.catch(() => undefined);

    await client.ping();
    expect(acquiresSent()).toHaveLength(1);
    await acceptRetry(retry);
    await grantNext(8);
    const release = await server.nextRequest('release');
    server.reply(release.id, { released: true });
    await within(second);
    expect(tokens).toEqual([8]);
    expect(client.leases.size).toBe(0);
  });

  it('holds acquireLock of the key back until the release is accepted, and releaseLock then ends the new hold', async () => {
    await setup();
    const retry = await withLockReleaseRefused();
    const second = client.acquireLock('k');
    second.catch(() => undefined);

    await client.ping();
    expect(acquiresSent()).toHaveLength(1);
    await acceptRetry(retry);
    await grantNext(8);
    expect(await within(second)).toBe(true);
    expect(client.leases.get('k')).toMatchObject({ token: 8, held: true });

    const releasing = client.releaseLock('k');
    server.reply((await server.nextRequest('release')).id, { released: true });
    await within(releasing);
    expect(client.leases.size).toBe(0);
  });

  it('holds a new acquire() back while the release of a Web Lock whose callback is done is asked again', async () => {
    await setup();
    const first = client.locks.request('k', () => 'first');
    await grantNext(7);
    refuse(await server.nextRequest('release'));
    expect(await within(first)).toBe('first');
    const retry = await pauseGate.next();
    const second = client.acquire('k');
    second.catch(() => undefined);

    await client.ping();
    expect(acquiresSent()).toHaveLength(1);
    await acceptRetry(retry);
    await grantNext(8);
    expect(await within(second)).toMatchObject({ token: 8, held: true });
  });

  it('sends a new acquire at once when the retried release finds the hold lost', async () => {
    await setup();
    const retry = await withLockReleaseRefused();
    const lease = client.leases.get('k');
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();
    expect(acquiresSent()).toHaveLength(1);

    // The loss ends the backoff wait: nothing is left to release, and the acquire goes out.
    server.send({ type: 'lost', key: 'k', token: 7, reason: 'expired' });
    await grantNext(8);
    expect(await within(second)).toMatchObject({ token: 8, held: true });
    expect(lease?.state).toBe('lost');
    retry.resume();
  });

  it('rejects a new acquire waiting for the release with connection_closed when the client closes', async () => {
    await setup();
    await withLockReleaseRefused();
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();

    await client.close();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_closed' });
    expect(acquiresSent()).toHaveLength(1);
  });

  it('rejects a new acquire waiting for the release with connection_lost when the connection drops for good', async () => {
    await setup();
    await withLockReleaseRefused();
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();

    server.terminate();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_lost' });
  });

  it('with session grace, a drop rejects the waiting acquire, and one made after the resume waits for the release asked again there', async () => {
    const held = [{ key: 'k', mode: 'exclusive', token: 7, expiresAt: null }];
    await setup({ reconnect: { initialDelay: 1, jitter: 0 } }, (n) =>
      n === 0 ? graceWelcome('secret') : { session: 's0', ...graceWelcome('secret', { resumed: true, held }) },
    );
    const retry = await withLockReleaseRefused();
    const lease = client.leases.get('k');
    const beforeDrop = client.acquire('k');
    beforeDrop.catch(() => undefined);
    await client.ping();

    server.terminate();
    await expect(within(beforeDrop)).rejects.toMatchObject({ code: 'connection_lost' });
    // The reconnect's own backoff wait comes after the release's.
    const reconnected = nextEvent(client, 'reconnect');
    (await pauseGate.next()).resume();
    await reconnected;
    server = await fake.connection(1);
    // The resume gave the hold back: the lease stays held, and its release is still to be asked again.
    expect(lease?.held).toBe(true);
    const afterResume = client.acquire('k');
    afterResume.catch(() => undefined);
    await client.ping();
    expect(acquiresSent()).toHaveLength(0);

    await acceptRetry(retry);
    await grantNext(8);
    expect(await within(afterResume)).toMatchObject({ token: 8, held: true });
    expect(lease?.state).toBe('released');
  });
});

describe('a release refused to its caller, which the client does not send again', () => {
  it('leaves the hold to a new acquire() at once, and a nested withLock runs within it and leaves it held', async () => {
    await setup();
    const acquiring = client.acquire('k');
    await grantNext(7);
    const lease = await within(acquiring);
    const releasing = lease?.release();
    refuse(await server.nextRequest('release'));
    await expect(within(releasing ?? Promise.resolve())).rejects.toMatchObject({ code: 'rate_limited' });

    const again = client.acquire('k');
    await grantNext(7);
    expect(await within(again)).toBe(lease);
    const inner = client.withLock('k', (held) => held === lease);
    await grantNext(7);
    expect(await within(inner)).toBe(true);
    await client.ping();
    expect(server.received.filter((frame) => frame.op === 'release')).toHaveLength(1);
    expect(pauseGate.waiting).toBe(0);
    expect(lease?.held).toBe(true);
  });

  it('leaves the hold to acquireLock at once after a refused releaseLock', async () => {
    await setup();
    const acquiring = client.acquireLock('k');
    await grantNext(7);
    expect(await within(acquiring)).toBe(true);
    const releasing = client.releaseLock('k');
    refuse(await server.nextRequest('release'));
    await expect(within(releasing)).rejects.toMatchObject({ code: 'rate_limited' });

    const again = client.acquireLock('k');
    await grantNext(7);
    expect(await within(again)).toBe(true);
    expect(client.leases.get('k')).toMatchObject({ token: 7, held: true });
    expect(pauseGate.waiting).toBe(0);
  });
});

describe('withLock nested on a key this client holds', () => {
  it('is not held back and leaves the outer lease held, whose own refused release then holds the next acquire back', async () => {
    await setup();
    const outer = client.withLock('k', async (lease) => {
      const inner = client.withLock('k', (nested) => nested === lease);
      await grantNext(7);
      expect(await within(inner)).toBe(true);
      expect(lease.held).toBe(true);
      return lease;
    });
    await grantNext(7);
    refuse(await server.nextRequest('release'));
    const lease = await within(outer);
    expect(server.received.filter((frame) => frame.op === 'release')).toHaveLength(1);
    expect(lease.held).toBe(true);

    const retry = await pauseGate.next();
    const next = client.acquire('k');
    next.catch(() => undefined);
    await client.ping();
    expect(acquiresSent()).toHaveLength(2);
    await acceptRetry(retry);
    await grantNext(8);
    expect(await within(next)).toMatchObject({ token: 8, held: true });
  });
});
