import { afterEach, describe, expect, it } from 'vitest';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { graceWelcome, within } from './fixtures.js';

/**
 * An acquire given up while queued whose grant raced the cancel: the client
 * releases that late hold, and the server refuses the release at first. The
 * session holds the key until a release is accepted, so a new acquire of
 * the key sent before then would be answered with that very hold (same
 * token), which the release asked again then drops.
 */
let fake: FakeServer;
let client: LockClient;
let server: FakeConnection;

/** A fake server that leaves acquire, cancel and release to the test; `welcome` adds fields to its welcome. */
async function setup(options: ConnectOptions = { reconnect: false }, welcome: Record<string, unknown> = {}) {
  fake = await startFakeServer({
    welcome: () => welcome,
    respond: (frame) => (frame.op === 'cancel' || frame.op === 'release' ? undefined : defaultResponse(frame)),
  });
  client = await LockClient.connect(fake.url, options);
  server = await fake.connection(0);
}
afterEach(async () => {
  await client.close();
  await fake.close();
});

/** Refuses request `frame` with `code`. */
function refuse(frame: Frame, code = 'rate_limited'): void {
  server.send({ type: 'reply', id: frame.id, ok: false, error: { code, message: 'not now' } });
}

/** Grants the acquire `frame` and answers its cancel as too late. */
function grantBeforeCancel(acquire: Frame, cancel: Frame, token = 7): void {
  server.reply(acquire.id, { acquired: true, token, expiresAt: null });
  server.reply(cancel.id, { cancelled: false });
}

/** Aborts the call `start` makes while its acquire is unanswered; the grant wins the race and its release is refused. */
async function lateGrantWithRefusedRelease(start: (signal: AbortSignal) => Promise<unknown>): Promise<Frame> {
  const controller = new AbortController();
  const first = start(controller.signal);
  const acquire = await server.nextRequest('acquire');
  controller.abort(new Error('gave up'));
  await expect(within(first)).rejects.toThrow('gave up');
  grantBeforeCancel(acquire, await server.nextRequest('cancel'));
  const release = await server.nextRequest('release');
  refuse(release);
  await client.ping();
  return release;
}

/** The next frame the client sent that is not a ping. */
async function nextNonPing(): Promise<Frame> {
  for (;;) {
    const frame = await server.nextRequest();
    if (frame.op !== 'ping') return frame;
  }
}

describe('a late grant of an aborted acquire whose release the server refused', () => {
  it('holds a new acquire() of the key back until the release is accepted, so it gets a hold of its own', async () => {
    await setup();
    await lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    second.catch(() => undefined);

    // Sent now, the acquire would be a re-acquire answered with token 7, which the release asked again then drops.
    const next = await nextNonPing();
    expect(next).toMatchObject({ op: 'release', key: 'k' });
    server.reply(next.id, { released: true });
    const again = await server.nextRequest('acquire');
    server.reply(again.id, { acquired: true, token: 8, expiresAt: null });
    const lease = await within(second);
    expect(lease).toMatchObject({ key: 'k', token: 8, held: true });
    expect(client.leases.get('k')).toBe(lease);
  });

  it('holds the name\'s next Web Locks request back until the release is accepted, so its callback gets a hold of its own', async () => {
    await setup();
    await lateGrantWithRefusedRelease((signal) => client.locks.request('k', { signal }, () => 'first'));
    const tokens: (number | undefined)[] = [];
    const second = client.locks.request('k', (lock) => {
      tokens.push(lock?.token);
      return 'second';
    });
    second.catch(() => undefined);

    const next = await nextNonPing();
    expect(next).toMatchObject({ op: 'release', key: 'k' });
    expect(tokens).toEqual([]);
    server.reply(next.id, { released: true });
    const again = await server.nextRequest('acquire');
    server.reply(again.id, { acquired: true, token: 8, expiresAt: null });
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
    grantBeforeCancel(acquire, await server.nextRequest('cancel'));
    refuse(await server.nextRequest('release'));
    await client.ping();

    // Sent now, the steal would be answered with the late hold (same token), which the release asked again then drops.
    const next = await nextNonPing();
    expect(next).toMatchObject({ op: 'release', key: 'k' });
    server.reply(next.id, { released: true });
    const stealAcquire = await server.nextRequest('acquire');
    expect(stealAcquire).toMatchObject({ key: 'k', steal: true });
    server.reply(stealAcquire.id, { acquired: true, token: 8, expiresAt: null });
    server.reply((await server.nextRequest('release')).id, { released: true });
    expect(await within(steal)).toBe(8);
  });

  it('a new acquire waiting for the late hold rejects with connection_closed when the client closes', async () => {
    await setup();
    await lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();

    await client.close();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_closed' });
  });

  it('a new acquire waiting for the late hold rejects with connection_lost when the connection drops for good', async () => {
    await setup();
    await lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();

    server.terminate();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_lost' });
  });

  it('a new acquire waiting for the late hold rejects with connection_lost at the drop, while session grace keeps the hold', async () => {
    // The announced rate makes the release wait 10 s before it asks again: the drop, not the retry, must end the wait.
    const limits = { maxPayload: 65536, maxKeyLength: 256, maxLocksPerSession: 1000, maxWaitersPerKey: 10000, rateLimit: 0.1 };
    await setup({ reconnect: { initialDelay: 60_000, jitter: 0 } }, { ...graceWelcome('secret'), limits });
    await lateGrantWithRefusedRelease((signal) => client.acquire('k', { signal }));
    const second = client.acquire('k');
    second.catch(() => undefined);
    await client.ping();

    server.terminate();
    await expect(within(second)).rejects.toMatchObject({ code: 'connection_lost' });
    // Parked for the resume: the server keeps the hold for the grace, and the release goes on after it.
    expect(client.leases.get('k')?.held).toBe(true);
  });
});
