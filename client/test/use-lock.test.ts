import { afterEach, describe, expect, it } from 'vitest';
import { createWsTransport, LockClient, type TransportFactory } from '../src/node.js';
import { LockController, type LockHookState } from '../src/react/lock-controller.js';
import { SharedLocks } from '../src/react/shared-lock.js';
import { defaultResponse, startFakeServer, type FakeServer } from './fake-server.js';
import { startHarness, within, type Harness } from './fixtures.js';

let fake: FakeServer | undefined;
let h: Harness | undefined;
const clients: LockClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake?.close();
  await h?.close();
  fake = undefined;
  h = undefined;
});

/** Resolves with the state of `controller` (or a `useLock` handle of it) once it is `status` (bounded). */
function stateIs<S extends LockHookState['status']>(
  controller: Pick<LockController, 'subscribe' | 'getSnapshot'>,
  status: S,
): Promise<Extract<LockHookState, { status: S }>> {
  const matches = (state: LockHookState): state is Extract<LockHookState, { status: S }> => state.status === status;
  return within(
    new Promise((resolve) => {
      const now = controller.getSnapshot();
      if (matches(now)) return resolve(now);
      const off = controller.subscribe(() => {
        const state = controller.getSnapshot();
        if (!matches(state)) return;
        off();
        resolve(state);
      });
    }),
    2000,
    `the state ${status}`,
  );
}

describe('useLock (LockController) when the lock is lost in the same read as its grant', () => {
  it('turns lost with the reason stolen, never held', async () => {
    // Grants every acquire with token 7 and steals it right behind the grant, in the same tick.
    fake = await startFakeServer({
      respond: (frame, connection) => {
        if (frame.op !== 'acquire') return defaultResponse(frame);
        connection.reply(frame.id, { acquired: true, token: 7, expiresAt: null });
        connection.send({ type: 'lost', key: frame.key, token: 7, reason: 'stolen' });
        return undefined;
      },
    });
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    const controller = new LockController(client, 'doc:y', () => ({ trackPosition: false }));
    const seen: string[] = [];
    controller.subscribe(() => seen.push(controller.getSnapshot().status));
    controller.acquire();
    const lost = await stateIs(controller, 'lost');
    expect(lost.reason).toBe('stolen');
    expect(lost.error.code).toBe('stolen');
    expect(seen).toEqual(['waiting', 'lost']);
  });
});

/** A ws transport that tells the test of each reply to a `release`, before the client reads it. */
function releaseReplyTransport(): {
  transport: TransportFactory;
  refused: () => Promise<void>;
  accepted: () => Promise<void>;
} {
  const inner = createWsTransport();
  const releases = new Set<unknown>();
  const refusals: (() => void)[] = [];
  const acceptances: (() => void)[] = [];
  const transport: TransportFactory = (url, handlers) => {
    const socket = inner(url, {
      ...handlers,
      message(text) {
        const frame = text === null ? undefined : (JSON.parse(text) as Record<string, unknown>);
        const release = frame?.type === 'reply' && releases.has(frame.id);
        if (release && frame.ok === false) for (const resolve of refusals.splice(0)) resolve();
        if (release && frame.ok === true) for (const resolve of acceptances.splice(0)) resolve();
        handlers.message(text);
      },
    });
    return {
      send(text) {
        const frame = JSON.parse(text) as Record<string, unknown>;
        if (frame.op === 'release') releases.add(frame.id);
        socket.send(text);
      },
      close: (code, reason) => socket.close(code, reason),
    };
  };
  const next = (list: (() => void)[], what: string) =>
    within(new Promise<void>((resolve) => list.push(resolve)), 2000, what);
  return {
    transport,
    refused: () => next(refusals, 'a release the server refused'),
    accepted: () => next(acceptances, 'a release the server accepted'),
  };
}

/** Carol, whose transport shows her release replies, and dave to look; one frame per session, then one per ms. */
async function rateLimitedPair() {
  h = await startHarness({ limits: { rateLimit: 1000, rateBurst: 1 } });
  const replies = releaseReplyTransport();
  const carol = await LockClient.connect(h.server.url, { transport: replies.transport });
  clients.push(carol);
  const dave = await h.connect();
  return { harness: h, carol, dave, ...replies };
}

describe('useLock (LockController) when the server refuses the release', () => {

  it('release() asks again until the server accepts it, so the lock does not stay held for the session', async () => {
    const { harness, carol, dave, refused, accepted } = await rateLimitedPair();
    const controller = new LockController(carol, 'react:1', () => ({ trackPosition: false }));
    controller.acquire();
    await stateIs(controller, 'held');
    // The acquire took carol's only frame: the release is refused (rate_limited).
    const wasRefused = refused();
    let settled = false;
    const releasing = controller.release().then(() => (settled = true));
    expect(controller.getSnapshot().status).toBe('idle');
    await wasRefused;
    expect((await dave.status('react:1')).holders.map((holder) => holder.session)).toEqual([carol.session]);
    expect(settled).toBe(false);
    const wasAccepted = accepted();
    harness.clock.advance(1000);
    await wasAccepted;
    await within(releasing, 2000, 'release() to resolve');
    expect((await dave.status('react:1')).locked).toBe(false);
  });

  it("a useLock handle's second release() (the unmount after a click on release) resolves only once the hold is gone, as the first does", async () => {
    const { harness, carol, dave, refused, accepted } = await rateLimitedPair();
    const handle = new SharedLocks(carol).handle('react:5', () => ({ trackPosition: false }));
    handle.acquire();
    await stateIs(handle, 'held');
    const wasRefused = refused();
    const settled = { first: false, second: false };
    const first = handle.release().then(() => (settled.first = true));
    const second = handle.release().then(() => (settled.second = true));
    await wasRefused;
    // The refused release is asked again later: carol still holds the key, and neither promise may say otherwise.
    expect((await dave.status('react:5')).holders.map((holder) => holder.session)).toEqual([carol.session]);
    expect(settled).toEqual({ first: false, second: false });
    const wasAccepted = accepted();
    harness.clock.advance(1000);
    await wasAccepted;
    await within(Promise.all([first, second]), 2000, 'both release() calls to resolve');
    expect((await dave.status('react:5')).locked).toBe(false);
  });

  it('release() of a waiting request resolves only once a grant that raced its cancel is handed back', async () => {
    // A server that leaves every acquire, cancel and release to the test.
    fake = await startFakeServer({
      respond: (frame) => (['acquire', 'cancel', 'release'].includes(String(frame.op)) ? undefined : defaultResponse(frame)),
    });
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    const server = await fake.connection(0);
    const handle = new SharedLocks(client).handle('react:6', () => ({ trackPosition: false }));
    handle.acquire();
    const acquire = await server.nextRequest('acquire');
    server.send({ type: 'queued', id: acquire.id, key: 'react:6', position: 1 });
    await stateIs(handle, 'waiting');
    let released = false;
    const releasing = handle.release().then(() => (released = true));
    // The server had granted it already: the session holds the key until the client hands that grant back.
    const cancel = await server.nextRequest('cancel');
    server.reply(acquire.id, { acquired: true, token: 9, expiresAt: null });
    server.reply(cancel.id, { cancelled: false });
    const handBack = await server.nextRequest('release');
    await client.ping();
    expect(released).toBe(false);
    server.reply(handBack.id, { released: true });
    await within(releasing, 2000, 'release() to resolve');
    expect(handle.getSnapshot().status).toBe('idle');
  });

  it('a grant whose caller was released before it heard of it is handed back, and asked again while the server refuses', async () => {
    const { harness, carol, dave, refused, accepted } = await rateLimitedPair();
    const controller = new LockController(carol, 'react:2', () => ({ trackPosition: false }));
    // release() runs once the client granted the acquire, before the controller heard of the grant.
    const acquireGrant = carol.acquireGrant.bind(carol);
    carol.acquireGrant = async (key, options) => {
      const grant = await acquireGrant(key, options);
      void controller.release();
      return grant;
    };
    const wasRefused = refused();
    controller.acquire();
    await wasRefused;
    expect(controller.getSnapshot().status).toBe('idle');
    expect((await dave.status('react:2')).holders.map((holder) => holder.session)).toEqual([carol.session]);
    const wasAccepted = accepted();
    harness.clock.advance(1000);
    await wasAccepted;
    expect((await dave.status('react:2')).locked).toBe(false);
    expect(controller.getSnapshot().status).toBe('idle');
  });

  it('acquiring again while the refused release is asked again waits for it, and gets a hold of its own', async () => {
    const { harness, carol, dave, refused, accepted } = await rateLimitedPair();
    const controller = new LockController(carol, 'react:3', () => ({ trackPosition: false }));
    controller.acquire();
    const first = await stateIs(controller, 'held');
    const wasRefused = refused();
    void controller.release();
    await wasRefused;
    controller.acquire();
    expect(controller.getSnapshot().status).toBe('waiting');
    const wasAccepted = accepted();
    harness.clock.advance(1000);
    await wasAccepted;
    // The acquire goes out once the release was accepted: one more frame of budget.
    harness.clock.advance(1000);
    const second = await stateIs(controller, 'held');
    expect(second.token).toBeGreaterThan(first.token);
    const holders = (await dave.status('react:3')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[carol.session, second.token]]);
  });

  it('a component mounted while the refused release of the last unmounted one is asked again gets a hold of its own', async () => {
    const { harness, carol, dave, refused, accepted } = await rateLimitedPair();
    const shared = new SharedLocks(carol);
    const request = () => ({ trackPosition: false });
    const unmounted = shared.handle('react:4', request);
    unmounted.acquire();
    const first = await stateIs(unmounted, 'held');
    const wasRefused = refused();
    void unmounted.release();
    await wasRefused;
    const mounted = shared.handle('react:4', request);
    mounted.acquire();
    expect(mounted.getSnapshot().status).toBe('waiting');
    const wasAccepted = accepted();
    harness.clock.advance(1000);
    await wasAccepted;
    harness.clock.advance(1000);
    const second = await stateIs(mounted, 'held');
    expect(second.token).toBeGreaterThan(first.token);
    const holders = (await dave.status('react:4')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[carol.session, second.token]]);
  });
});

describe('useLock (LockController) when the server refuses the release, and the client acquires the key otherwise', () => {
  /** Carol holds `key` through a controller whose release the server just refused; resolves with that first hold. */
  async function releaseRefused(key: string) {
    const setup = await rateLimitedPair();
    const controller = new LockController(setup.carol, key, () => ({ trackPosition: false }));
    controller.acquire();
    const first = await stateIs(controller, 'held');
    const wasRefused = setup.refused();
    void controller.release();
    await wasRefused;
    // One frame of budget: sent now, an acquire of the key would get it ahead of the release asked again.
    setup.harness.clock.advance(1000);
    return { ...setup, first };
  }

  /**
   * Lets the release asked again be accepted, then gives the acquire that
   * waited for it its frame. An acquire sent at once takes the frame first
   * (`granted` settles, answered with the hold being released): the release
   * is then accepted with the next frame.
   */
  async function acceptRetryThenAcquire(
    setup: { harness: Harness; accepted: () => Promise<void> },
    granted: Promise<unknown>,
  ) {
    const wasAccepted = setup.accepted();
    await within(Promise.race([wasAccepted, granted]), 2000, 'the release accepted or the acquire answered');
    setup.harness.clock.advance(1000);
    await wasAccepted;
    setup.harness.clock.advance(1000);
  }

  it('an acquire() of the key waits until the release is accepted and gets a new grant, never the hold being released', async () => {
    const setup = await releaseRefused('react:5');
    const { carol, dave, first } = setup;
    const second = carol.acquire('react:5');
    await acceptRetryThenAcquire(setup, second);
    const lease = await within(second, 2000, 'the acquire');
    expect(lease).toMatchObject({ key: 'react:5', held: true });
    expect(lease?.token).toBeGreaterThan(first.token);
    expect(first.lease.held).toBe(false);
    const holders = (await dave.status('react:5')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[carol.session, lease?.token]]);
  });

  it('an acquire() of the key also waits for the hand-back of a grant that came after release()', async () => {
    const setup = await rateLimitedPair();
    const { carol, dave } = setup;
    const controller = new LockController(carol, 'react:7', () => ({ trackPosition: false }));
    // release() runs once the client granted the acquire, before the controller heard of the grant.
    const acquireGrant = carol.acquireGrant.bind(carol);
    let first: number | undefined;
    carol.acquireGrant = async (key, options) => {
      const grant = await acquireGrant(key, options);
      first = grant?.lease.token;
      void controller.release();
      return grant;
    };
    const wasRefused = setup.refused();
    controller.acquire();
    await wasRefused;
    setup.harness.clock.advance(1000);
    const second = carol.acquire('react:7');
    await acceptRetryThenAcquire(setup, second);
    const lease = await within(second, 2000, 'the acquire');
    expect(lease).toMatchObject({ key: 'react:7', held: true });
    expect(lease?.token).toBeGreaterThan(first ?? Infinity);
    const holders = (await dave.status('react:7')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[carol.session, lease?.token]]);
  });

  it('a Web Lock request of the key waits until the release is accepted and holds a new grant', async () => {
    const setup = await releaseRefused('react:6');
    const { carol, dave, first } = setup;
    let granted: (token: number | undefined) => void = () => undefined;
    const token = new Promise<number | undefined>((resolve) => {
      granted = resolve;
    });
    let done: () => void = () => undefined;
    const request = carol.locks.request('react:6', (lock) => {
      granted(lock?.token);
      return new Promise<void>((resolve) => {
        done = resolve;
      });
    });
    await acceptRetryThenAcquire(setup, token);
    const held = await within(token, 2000, 'the Web Lock');
    expect(held).toBeGreaterThan(first.token);
    const holders = (await dave.status('react:6')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[carol.session, held]]);
    setup.harness.clock.advance(1000);
    done();
    await within(request, 2000, 'the Web Lock request');
  });
});
