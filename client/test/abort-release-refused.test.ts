import { afterEach, describe, expect, it } from 'vitest';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import type { FakeConnection, Frame } from './fake-server.js';
import { graceWelcome, within } from './fixtures.js';
import { startReleaseRefusingServer, type ReleaseRefusingServer } from './release-refusing-server.js';

/**
 * An acquire given up while queued whose grant raced the cancel: the client
 * releases that late hold, and the server refuses the release at first. The
 * session holds the key until a release is accepted, so a new acquire of
 * the key sent before then would be answered with that very hold (same
 * token), which the release asked again then drops.
 */
let refusing: ReleaseRefusingServer;
let client: LockClient;
let server: FakeConnection;

/** Connects over a server that leaves acquire, cancel and release to the test; `welcome` adds fields to its welcome. */
async function setup(connect?: ConnectOptions, welcome: Record<string, unknown> = {}) {
  refusing = await startReleaseRefusingServer({ connect, welcome: () => welcome });
  ({ client, server } = refusing);
}
afterEach(() => refusing.close());

/** The next frame the client sent that is not a ping, which must be the release of the late hold of `k`. */
async function lateRelease(): Promise<Frame> {
  for (;;) {
    const frame = await server.nextRequest();
    if (frame.op === 'ping') continue;
    expect(frame).toMatchObject({ op: 'release', key: 'k' });
    return frame;
  }
}

/** Drops the connection for good while a new acquire of `k` waits for the late hold, which must reject it with connection_lost. */
async function dropWhileAcquireWaits(): Promise<void> {
  await refusing.lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
  const second = client.acquire('k');
  await refusing.sent(second);

  server.terminate();
  await expect(within(second)).rejects.toMatchObject({ code: 'connection_lost' });
}

describe('a late grant of an aborted acquire whose release the server refused', () => {
  it('holds a new acquire() of the key back until the release is accepted, so it gets a hold of its own', async () => {
    await setup();
    await refusing.lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    second.catch(() => undefined);

    // Sent now, the acquire would be a re-acquire answered with token 7, which the release asked again then drops.
    server.reply((await lateRelease()).id, { released: true });
    await refusing.grantNext(8);
    const lease = await within(second);
    expect(lease).toMatchObject({ key: 'k', token: 8, held: true });
    expect(client.leases.get('k')).toBe(lease);
  });

  it('holds the name\'s next Web Locks request back until the release is accepted, so its callback gets a hold of its own', async () => {
    await setup();
    await refusing.lateGrantWithRefusedRelease((signal) => client.locks.request('k', { signal }, () => 'first'));
    const tokens: (number | undefined)[] = [];
    const second = client.locks.request('k', (lock) => {
      tokens.push(lock?.token);
      return 'second';
    });
    second.catch(() => undefined);

    const release = await lateRelease();
    expect(tokens).toEqual([]);
    server.reply(release.id, { released: true });
    await refusing.grantNext(8);
    // The callback is done: the hold goes back.
    const done = await server.nextRequest('release');
    expect(tokens).toEqual([8]);
    server.reply(done.id, { released: true });
    expect(await within(second)).toBe('second');
  });

  it('holds a Web Locks steal that took a queued request back out of the server queue until the late hold is gone', async () => {
    await setup();
    const queuedRequest = client.locks.request('k', () => 'queued');
    queuedRequest.catch(() => undefined);
    const acquire = await server.nextRequest('acquire');
    server.send({ type: 'queued', id: acquire.id, key: 'k', position: 1 });
    const steal = client.locks.request('k', { steal: true }, (lock) => lock?.token);
    // The steal cancels the queued acquire (a session may not queue and steal at once); the grant wins the race.
    refusing.grantBeforeCancel(acquire, await server.nextRequest('cancel'));
    refusing.refuse(await server.nextRequest('release'));
    await client.ping();

    // Sent now, the steal would be answered with the late hold (same token), which the release asked again then drops.
    server.reply((await lateRelease()).id, { released: true });
    expect(await refusing.grantNext(8)).toMatchObject({ key: 'k', steal: true });
    await refusing.acceptRelease();
    expect(await within(steal)).toBe(8);
  });

  it('a new acquire waiting for the late hold rejects with connection_closed when the client closes', async () => {
    await setup();
    await refusing.lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    await refusing.sent(second);

    await client.close();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_closed' });
  });

  it('a new acquire waiting for the late hold rejects with connection_lost when the connection drops for good', async () => {
    await setup();
    await dropWhileAcquireWaits();
  });

  it('a new acquire waiting for the late hold rejects with connection_lost at the drop, while session grace keeps the hold', async () => {
    // The announced rate makes the release wait 10 s before it asks again: the drop, not the retry, must end the wait.
    const limits = { maxPayload: 65536, maxKeyLength: 256, maxLocksPerSession: 1000, maxWaitersPerKey: 10000, rateLimit: 0.1 };
    await setup({ reconnect: { initialDelay: 60_000, jitter: 0 } }, { ...graceWelcome('secret'), limits });
    await dropWhileAcquireWaits();
    // Parked for the resume: the server keeps the hold for the grace, and the release goes on after it.
    expect(client.leases.get('k')?.held).toBe(true);
  });
});
