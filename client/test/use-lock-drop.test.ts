import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockClient, type ClientEvents } from '../src/node.js';
import { LockController, type LockHookState } from '../src/react/lock-controller.js';
import { SharedLocks } from '../src/react/shared-lock.js';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { watchForEvent } from '../../test/helpers/watch-event.js';
import { createMemoryStore } from '@lockwire/server';
import { fastReconnect, gatedStore, recordingTransport, startHarness, within, type Harness } from './fixtures.js';
import { pauseGate, type HeldPause } from './pause-gate.js';

vi.mock('../src/reconnect.js', async (importOriginal) =>
  (await import('./pause-gate.js')).withGatedPause(await importOriginal<typeof import('../src/reconnect.js')>()),
);

/**
 * A `useLock` request waiting in the server's queue when the connection
 * drops: the server takes it out of the queue, and the controller asks
 * again once the client is open again. Alice connects through a proxy the
 * tests cut; bob and carol connect directly. While the pause gate holds,
 * the client's timers (the reconnect's backoff, the controller's
 * `acquireTimeout` while it waits for the reconnect) fire only when a test
 * resumes them.
 */
let h: Harness;
let proxy: TcpProxy;
/** Clients of the source build (the controller's), closed after each test. */
const clients: LockClient[] = [];
afterEach(async () => {
  pauseGate.reset();
  vi.restoreAllMocks();
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await h.close();
  await proxy.close();
});

/** Resolves with the next `type` event of `client` (bounded); `fixtures.nextEvent` for a client of the source build. */
function nextEvent<K extends keyof ClientEvents>(client: LockClient, type: K): Promise<ClientEvents[K]> {
  return within(
    new Promise((resolve) => {
      const off = client.on(type, (payload) => {
        off();
        resolve(payload);
      });
    }),
    2000,
    `the client's ${String(type)} event`,
  );
}

type View = Pick<LockController, 'subscribe' | 'getSnapshot'>;

/** Resolves with the state of `view` once `test` accepts it (bounded). */
function stateWhere(view: View, test: (state: LockHookState) => boolean, what: string): Promise<LockHookState> {
  return within(
    new Promise((resolve) => {
      if (test(view.getSnapshot())) return resolve(view.getSnapshot());
      const off = view.subscribe(() => {
        const state = view.getSnapshot();
        if (!test(state)) return;
        off();
        resolve(state);
      });
    }),
    2000,
    what,
  );
}

const waitingAt = (position: number | null) => (state: LockHookState) =>
  state.status === 'waiting' && state.position === position;

/** Records every state `view` turns to, as `status` or `status:position`. */
function record(view: View): string[] {
  const seen: string[] = [];
  view.subscribe(() => {
    const state = view.getSnapshot();
    seen.push(state.status === 'waiting' ? `waiting:${String(state.position)}` : state.status);
  });
  return seen;
}

/**
 * Bob holds `key`; alice (through the proxy, reconnecting at once unless the
 * gate holds, her sent frames recorded) and carol are ready to ask for it.
 */
async function setup(key: string, options: Parameters<typeof startHarness>[0] = {}) {
  h = await startHarness(options);
  proxy = await startTcpProxy(h.server.port);
  const { transport, sent } = recordingTransport();
  const alice = await LockClient.connect(proxy.url(h.server.url), { transport, reconnect: fastReconnect });
  clients.push(alice);
  const bob = await h.connect();
  const carol = await h.connect();
  const bobLease = await bob.acquire(key);
  const acquires = () => sent.filter((frame) => frame.op === 'acquire');
  return { alice, bob, carol, bobLease, acquires, acquiresSent: () => acquires().length };
}

/** Cuts alice's connection with her backoff held: resolves once the server took her request out of the queue. */
async function dropWaiting(alice: LockClient, watcher: Awaited<ReturnType<Harness['connect']>>, key: string) {
  pauseGate.holding = true;
  const dequeued = await watchForEvent(watcher, key, (event) => event.event === 'dequeued' && event.session === alice.session, 2000);
  const down = nextEvent(alice, 'disconnect');
  proxy.cut();
  expect(await down).toMatchObject({ reconnecting: true });
  const backoff = await pauseGate.next();
  await dequeued();
  return backoff;
}

/** Lets alice reconnect (the gate let go, her backoff resumed), then shows she asked for `key` once only: its queue is empty. */
async function reconnectAskingNothing(
  alice: LockClient,
  backoff: HeldPause,
  bob: Awaited<ReturnType<Harness['connect']>>,
  key: string,
  acquiresSent: () => number,
): Promise<void> {
  const reconnected = nextEvent(alice, 'reconnect');
  pauseGate.holding = false;
  backoff.resume();
  await reconnected;
  // A round trip after the reconnect: an acquire sent on it would be in the queue by now.
  await alice.ping();
  expect((await bob.status(key)).queue).toEqual([]);
  expect(acquiresSent()).toBe(1);
}

describe('useLock (LockController) when the connection drops while its request waits in line', () => {
  it('stays waiting and, once the client reconnected, asks again at the tail of the line, then is granted in turn', async () => {
    const { alice, bob, carol, bobLease, acquiresSent } = await setup('edit:1');
    const handle = new SharedLocks(alice).handle('edit:1', () => ({ trackPosition: false }));
    const seen = record(handle);
    handle.acquire();
    await stateWhere(handle, waitingAt(1), 'waiting at 1');
    const carolLease = carol.acquire('edit:1');

    const backoff = await dropWaiting(alice, bob, 'edit:1');
    expect(handle.getSnapshot()).toEqual({ status: 'waiting', position: null });
    const reconnected = nextEvent(alice, 'reconnect');
    pauseGate.holding = false;
    backoff.resume();
    await reconnected;
    // Carol queued while alice was away: alice's new request is behind her.
    await stateWhere(handle, waitingAt(2), 'waiting at 2');
    expect(acquiresSent()).toBe(2);

    await bobLease?.release();
    const carolHold = await within(carolLease, 2000, "carol's grant");
    await carolHold?.release();
    const held = await stateWhere(handle, (state) => state.status === 'held', 'held');
    expect(seen).toEqual(['waiting:null', 'waiting:1', 'waiting:null', 'waiting:2', 'held']);
    const holders = (await bob.status('edit:1')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([
      [alice.session, held.status === 'held' ? held.token : -1],
    ]);
  });

  it('follows its new place in line with trackPosition after the reconnect', async () => {
    const { alice, bob, carol, acquiresSent } = await setup('edit:2');
    const controller = new LockController(alice, 'edit:2', () => ({}));
    controller.acquire();
    await stateWhere(controller, waitingAt(1), 'waiting at 1');
    const giveUp = new AbortController();
    const carolWaits = carol.acquire('edit:2', { signal: giveUp.signal }).catch((error: unknown) => error);

    const backoff = await dropWaiting(alice, bob, 'edit:2');
    pauseGate.holding = false;
    backoff.resume();
    await stateWhere(controller, waitingAt(2), 'waiting at 2, behind carol');
    // Carol leaves the line: the watch of the new connection moves alice up.
    giveUp.abort();
    await carolWaits;
    await stateWhere(controller, waitingAt(1), 'waiting at 1 again');
    expect(acquiresSent()).toBe(2);
    await controller.release();
    expect((await bob.status('edit:2')).queue).toEqual([]);
  });

  it('turns error with the acquire\'s connection_lost when the client closes for good instead, sending nothing more', async () => {
    const { alice, bob, acquiresSent } = await setup('edit:3');
    const controller = new LockController(alice, 'edit:3', () => ({ trackPosition: false }));
    controller.acquire();
    await stateWhere(controller, waitingAt(1), 'waiting at 1');

    await dropWaiting(alice, bob, 'edit:3');
    expect(controller.getSnapshot()).toEqual({ status: 'waiting', position: null });
    await alice.close();
    const failed = await stateWhere(controller, (state) => state.status === 'error', 'error');
    expect(failed).toMatchObject({ status: 'error', error: { code: 'connection_lost' } });
    expect(acquiresSent()).toBe(1);
  });

  it('release() while the client reconnects turns idle and sends nothing after the reconnect', async () => {
    const { alice, bob, acquiresSent } = await setup('edit:4');
    const handle = new SharedLocks(alice).handle('edit:4', () => ({ trackPosition: false }));
    handle.acquire();
    await stateWhere(handle, waitingAt(1), 'waiting at 1');

    const backoff = await dropWaiting(alice, bob, 'edit:4');
    expect(handle.getSnapshot()).toEqual({ status: 'waiting', position: null });
    await within(handle.release(), 2000, 'release() to resolve');
    expect(handle.getSnapshot()).toEqual({ status: 'idle', timedOut: false });
    await reconnectAskingNothing(alice, backoff, bob, 'edit:4', acquiresSent);
  });

  it('a request made while the client reconnects waits for the reconnect and is then sent', async () => {
    const { alice, acquiresSent } = await setup('edit:6');
    pauseGate.holding = true;
    const down = nextEvent(alice, 'disconnect');
    proxy.cut();
    await down;
    const backoff = await pauseGate.next();
    expect(alice.state).toBe('reconnecting');
    const controller = new LockController(alice, 'edit:6', () => ({ trackPosition: false }));
    const seen = record(controller);
    controller.acquire();
    const reconnected = nextEvent(alice, 'reconnect');
    pauseGate.holding = false;
    backoff.resume();
    await reconnected;
    await stateWhere(controller, waitingAt(1), 'waiting at 1');
    expect(seen).toEqual(['waiting:null', 'waiting:1']);
    expect(acquiresSent()).toBe(1);
  });

  it('with session grace, a grant whose reply the drop lost is handed back by the resume and the request asked again holds a lock of its own', async () => {
    const { alice, bob, bobLease, acquiresSent } = await setup('edit:5', { sessionGrace: 30_000 });
    const controller = new LockController(alice, 'edit:5', () => ({ trackPosition: false }));
    controller.acquire();
    await stateWhere(controller, waitingAt(1), 'waiting at 1');

    // The grant is made while alice's path is silent: its reply dies with the connection.
    pauseGate.holding = true;
    proxy.hold();
    const granted = await watchForEvent(bob, 'edit:5', (event) => event.event === 'acquired' && event.session === alice.session, 2000);
    await bobLease?.release();
    const grant = await granted();
    const down = nextEvent(alice, 'disconnect');
    proxy.cut();
    proxy.resume();
    await down;
    const backoff = await pauseGate.next();
    expect(controller.getSnapshot()).toEqual({ status: 'waiting', position: null });
    // The server keeps the grant with the session for the resume.
    expect((await bob.status('edit:5')).holders.map((holder) => holder.token)).toEqual([grant.token]);

    const reconnected = nextEvent(alice, 'reconnect');
    pauseGate.holding = false;
    backoff.resume();
    expect(await reconnected).toMatchObject({ resumed: true });
    const held = await stateWhere(controller, (state) => state.status === 'held', 'held');
    expect(acquiresSent()).toBe(2);
    const token = held.status === 'held' ? held.token : -1;
    expect(token).toBeGreaterThan(grant.token ?? Infinity);
    const holders = (await bob.status('edit:5')).holders;
    expect(holders.map((holder) => [holder.session, holder.token])).toEqual([[alice.session, token]]);
  });
});

describe('useLock (LockController) acquireTimeout across a drop', () => {
  /** `performance.now()` runs on, plus what a test adds to it. */
  function skewedClock(): (ms: number) => void {
    const real = performance.now.bind(performance);
    let skew = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => real() + skew);
    return (ms) => {
      skew += ms;
    };
  }

  /** Alice's controller asks with `acquireTimeout`, waits at 1 and is cut; resolves with the held backoff and deadline. */
  async function droppedWithTimeout(key: string, acquireTimeout: number) {
    const setupDone = await setup(key);
    const advance = skewedClock();
    const controller = new LockController(setupDone.alice, key, () => ({ trackPosition: false, acquireTimeout }));
    controller.acquire();
    await stateWhere(controller, waitingAt(1), 'waiting at 1');
    const backoff = await dropWaiting(setupDone.alice, setupDone.bob, key);
    // The controller's timer for the rest of acquireTimeout, while it waits for the reconnect.
    const deadline = await pauseGate.next();
    return { ...setupDone, advance, controller, backoff, deadline };
  }

  it('asks again with what is left of acquireTimeout, counted from the first ask', async () => {
    const { alice, acquires, advance, controller, backoff, deadline } = await droppedWithTimeout('time:1', 60_000);
    expect(deadline.ms).toBeLessThanOrEqual(60_000);
    expect(deadline.ms).toBeGreaterThan(58_000);
    advance(20_000);
    const reconnected = nextEvent(alice, 'reconnect');
    pauseGate.holding = false;
    backoff.resume();
    await reconnected;
    await stateWhere(controller, waitingAt(1), 'waiting at 1 again');
    const [first, second] = acquires();
    expect(first?.acquireTimeout).toBe(60_000);
    expect(second?.acquireTimeout).toBeLessThanOrEqual(40_000);
    expect(second?.acquireTimeout).toBeGreaterThan(38_000);
    // The timer ended with the wait.
    expect(deadline.signal.aborted).toBe(true);
    expect(acquires()).toHaveLength(2);
  });

  it('turns idle with timedOut when acquireTimeout runs out while the client reconnects, and sends nothing after the reconnect', async () => {
    const { alice, bob, acquiresSent, controller, backoff, deadline } = await droppedWithTimeout('time:2', 5000);
    expect(controller.getSnapshot()).toEqual({ status: 'waiting', position: null });
    deadline.resume();
    await stateWhere(controller, (state) => state.status === 'idle', 'idle');
    expect(controller.getSnapshot()).toEqual({ status: 'idle', timedOut: true });
    await reconnectAskingNothing(alice, backoff, bob, 'time:2', acquiresSent);
  });

  it('turns idle with timedOut at the reconnect when no time is left by then, sending nothing more', async () => {
    const { alice, bob, acquiresSent, advance, controller, backoff } = await droppedWithTimeout('time:3', 5000);
    // The time runs out before the timer fired.
    advance(5000);
    pauseGate.holding = false;
    backoff.resume();
    await stateWhere(controller, (state) => state.status === 'idle', 'idle');
    expect(controller.getSnapshot()).toEqual({ status: 'idle', timedOut: true });
    await alice.ping();
    expect((await bob.status('time:3')).queue).toEqual([]);
    expect(acquiresSent()).toBe(1);
  });

  it('a steal the drop cut off after it was sent turns error with connection_lost and is not sent again, as the server may have carried it out', async () => {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    const { alice, bob, carol, acquiresSent } = await setup('edit:s', { store, sessionGrace: 30_000 });
    let carolQueued: () => void = () => undefined;
    const queued = new Promise<void>((resolve) => (carolQueued = resolve));
    const carolLease = carol.acquire('edit:s', { onQueued: () => carolQueued() });
    await within(queued, 2000, 'carol queued');

    const controller = new LockController(alice, 'edit:s', () => ({ steal: true, trackPosition: false }));
    const gate = holdNextAcquire();
    controller.acquire();
    // The server carried out the steal (bob lost the lock); its reply waits, and the drop loses it.
    await gate.ran;
    const down = nextEvent(alice, 'disconnect');
    const reconnected = nextEvent(alice, 'reconnect');
    proxy.cut();
    await down;
    gate.open();
    const failed = await stateWhere(controller, (state) => state.status !== 'waiting', 'the steal to end');
    expect(failed).toMatchObject({ status: 'error', error: { code: 'connection_lost' } });

    // The resume gives the stolen hold back with no lease for it: released, it goes to carol, who keeps it.
    expect(await reconnected).toMatchObject({ resumed: true });
    const carolHold = await within(carolLease, 2000, "carol's grant");
    await alice.ping();
    expect((await bob.status('edit:s')).holders.map((holder) => holder.session)).toEqual([carol.session]);
    expect(acquiresSent()).toBe(1);
    expect(controller.getSnapshot().status).toBe('error');
    await carolHold?.release();
  });
});
