import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import type { FakeConnection } from './fake-server.js';
import { graceWelcome, nextEvent, within } from './fixtures.js';
import { pauseGate, type HeldPause } from './pause-gate.js';
import { startReleaseRefusingServer, type ReleaseRefusingServer } from './release-refusing-server.js';

vi.mock('../src/reconnect.js', async (importOriginal) =>
  (await import('./pause-gate.js')).withGatedPause(await importOriginal<typeof import('../src/reconnect.js')>()),
);

/**
 * A release the server refused that the client sends again in the
 * background (after `withLock`, of a Web Lock whose callbacks are done):
 * the session holds the key until a release is accepted, so a new acquire
 * of the key sent before then would be answered with that very hold (same
 * token, the lease the client already has), which the release asked again
 * then drops. The backoff waits are held by the pause gate: a test decides
 * when the release is asked again.
 */
let refusing: ReleaseRefusingServer;
let client: LockClient;
let server: FakeConnection;

/** Connects over a server that leaves releases to the test; `welcome` gives the n-th connection's extra welcome fields. */
async function setup(connect?: ConnectOptions, welcome?: (n: number) => Record<string, unknown>) {
  refusing = await startReleaseRefusingServer({ connect, welcome });
  ({ client, server } = refusing);
}
afterEach(() => refusing.close());

/**
 * Checks that `pending`, an acquire of `k` made while the refused release
 * is asked again, was not sent (the connection got `acquiresBefore`
 * acquires), then accepts the retried release and grants the acquire, now
 * sent, token 8.
 */
async function heldBackUntilAccepted(retry: HeldPause, pending: Promise<unknown>, acquiresBefore = 1) {
  await refusing.sent(pending);
  expect(refusing.acquiresSent()).toHaveLength(acquiresBefore);
  await refusing.acceptRetry(retry);
  await refusing.grantNext(8);
}

describe('a release the client sends again after the server refused it', () => {
  it('holds a new acquire() of the key back until the release is accepted, so it gets a hold of its own', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const second = client.acquire('k');

    // Sent now, the acquire would be a re-acquire answered with token 7, which the release asked again then drops.
    await heldBackUntilAccepted(retry, second);
    const lease = await within(second);
    expect(lease).toMatchObject({ key: 'k', token: 8, held: true });
    expect(client.leases.get('k')).toBe(lease);
  });

  it('holds the next withLock of the key back until the release is accepted, and it releases the hold it got', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const tokens: number[] = [];
    const second = client.withLock('k', (lease) => tokens.push(lease.token));
    await heldBackUntilAccepted(retry, second);
    await refusing.acceptRelease();
    await within(second);
    expect(tokens).toEqual([8]);
    expect(client.leases.size).toBe(0);
  });

  it('holds acquireLock of the key back until the release is accepted, and releaseLock then ends the new hold', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const second = client.acquireLock('k');
    await heldBackUntilAccepted(retry, second);
    expect(await within(second)).toBe(true);
    expect(client.leases.get('k')).toMatchObject({ token: 8, held: true });

    const releasing = client.releaseLock('k');
    await refusing.acceptRelease();
    await within(releasing);
    expect(client.leases.size).toBe(0);
  });

  it('holds a new acquire() back while the release of a Web Lock whose callback is done is asked again', async () => {
    await setup();
    const first = client.locks.request('k', () => 'first');
    await refusing.grantNext(7);
    refusing.refuse(await server.nextRequest('release'));
    expect(await within(first)).toBe('first');
    const retry = await pauseGate.next();
    const second = client.acquire('k');
    await heldBackUntilAccepted(retry, second);
    expect(await within(second)).toMatchObject({ token: 8, held: true });
  });

  it('sends a new acquire at once when the retried release finds the hold lost', async () => {
    await setup();
    const retry = await refusing.withLockReleaseRefused();
    const lease = client.leases.get('k');
    const second = client.acquire('k');
    await refusing.sent(second);
    expect(refusing.acquiresSent()).toHaveLength(1);

    // The loss ends the backoff wait: nothing is left to release, and the acquire goes out.
    server.send({ type: 'lost', key: 'k', token: 7, reason: 'expired' });
    await refusing.grantNext(8);
    expect(await within(second)).toMatchObject({ token: 8, held: true });
    expect(lease?.state).toBe('lost');
    retry.resume();
  });

  it('rejects a new acquire waiting for the release with connection_closed when the client closes', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const second = client.acquire('k');
    await refusing.sent(second);

    await client.close();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_closed' });
    expect(refusing.acquiresSent()).toHaveLength(1);
  });

  it('rejects a new acquire waiting for the release with connection_lost when the connection drops for good', async () => {
    await setup();
    await refusing.withLockReleaseRefused();
    const second = client.acquire('k');
    await refusing.sent(second);

    server.terminate();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_lost' });
  });

  it('with session grace, a drop rejects the waiting acquire, and one made after the resume waits for the release asked again there', async () => {
    const held = [{ key: 'k', mode: 'exclusive', token: 7, expiresAt: null }];
    await setup({ reconnect: { initialDelay: 1, jitter: 0 } }, (n) =>
      n === 0 ? graceWelcome('secret') : { session: 's0', ...graceWelcome('secret', { resumed: true, held }) },
    );
    const retry = await refusing.withLockReleaseRefused();
    const lease = client.leases.get('k');
    const beforeDrop = client.acquire('k');
    await refusing.sent(beforeDrop);

    server.terminate();
    await expect(within(beforeDrop)).rejects.toMatchObject({ code: 'connection_lost' });
    // The reconnect's own backoff wait comes after the release's.
    const reconnected = nextEvent(client, 'reconnect');
    (await pauseGate.next()).resume();
    await reconnected;
    server = await refusing.follow(1);
    // The resume gave the hold back: the lease stays held, and its release is still to be asked again.
    expect(lease?.held).toBe(true);
    const afterResume = client.acquire('k');
    await heldBackUntilAccepted(retry, afterResume, 0);
    expect(await within(afterResume)).toMatchObject({ token: 8, held: true });
    expect(lease?.state).toBe('released');
  });
});

describe('a release refused to its caller, which the client does not send again', () => {
  it('leaves the hold to a new acquire() at once, and a nested withLock runs within it and leaves it held', async () => {
    await setup();
    const acquiring = client.acquire('k');
    await refusing.grantNext(7);
    const lease = await within(acquiring);
    const releasing = lease?.release();
    refusing.refuse(await server.nextRequest('release'));
    await expect(within(releasing ?? Promise.resolve())).rejects.toMatchObject({ code: 'rate_limited' });

    const again = client.acquire('k');
    await refusing.grantNext(7);
    expect(await within(again)).toBe(lease);
    const inner = client.withLock('k', (held) => held === lease);
    await refusing.grantNext(7);
    expect(await within(inner)).toBe(true);
    await client.ping();
    expect(server.received.filter((frame) => frame.op === 'release')).toHaveLength(1);
    expect(pauseGate.waiting).toBe(0);
    expect(lease?.held).toBe(true);
  });

  it('leaves the hold to acquireLock at once after a refused releaseLock', async () => {
    await setup();
    const acquiring = client.acquireLock('k');
    await refusing.grantNext(7);
    expect(await within(acquiring)).toBe(true);
    const releasing = client.releaseLock('k');
    refusing.refuse(await server.nextRequest('release'));
    await expect(within(releasing)).rejects.toMatchObject({ code: 'rate_limited' });

    const again = client.acquireLock('k');
    await refusing.grantNext(7);
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
      await refusing.grantNext(7);
      expect(await within(inner)).toBe(true);
      expect(lease.held).toBe(true);
      return lease;
    });
    await refusing.grantNext(7);
    refusing.refuse(await server.nextRequest('release'));
    const lease = await within(outer);
    expect(server.received.filter((frame) => frame.op === 'release')).toHaveLength(1);
    expect(lease.held).toBe(true);

    const retry = await pauseGate.next();
    const next = client.acquire('k');
    await heldBackUntilAccepted(retry, next, 2);
    expect(await within(next)).toMatchObject({ token: 8, held: true });
  });
});
