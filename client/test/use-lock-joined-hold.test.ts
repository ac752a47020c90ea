import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '../src/node.js';
import { LockController, type LockHookState } from '../src/react/lock-controller.js';
import { SharedLocks } from '../src/react/shared-lock.js';
import { startHarness, within, type Harness } from './fixtures.js';

let h: Harness | undefined;
const clients: LockClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await h?.close();
  h = undefined;
});

/** A client of the harness's server, built from this package's sources (the ones the hooks take). */
async function connect(harness: Harness): Promise<LockClient> {
  const client = await LockClient.connect(harness.server.url);
  clients.push(client);
  return client;
}

type Store = Pick<LockController, 'subscribe' | 'getSnapshot'>;

/** Resolves with the state of `store` (a controller or a `useLock` handle) once it is `status` (bounded). */
function stateIs<S extends LockHookState['status']>(store: Store, status: S): Promise<Extract<LockHookState, { status: S }>> {
  const matches = (state: LockHookState): state is Extract<LockHookState, { status: S }> => state.status === status;
  return within(
    new Promise((resolve) => {
      const now = store.getSnapshot();
      if (matches(now)) return resolve(now);
      const off = store.subscribe(() => {
        const state = store.getSnapshot();
        if (!matches(state)) return;
        off();
        resolve(state);
      });
    }),
    2000,
    `the state ${status}`,
  );
}

async function holderSessions(observer: LockClient, key: string): Promise<string[]> {
  return (await observer.status(key)).holders.map((holder) => holder.session);
}

const untracked = () => ({ trackPosition: false });

describe('useLock on a key the client already holds otherwise', () => {
  it('unmounting a useLock that joined an acquire() lease leaves that hold with its holder, as a withLock inside it does', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const outer = await carol.acquire('joined:acquire');
    if (!outer) throw new Error('not granted');
    const handle = new SharedLocks(carol).handle('joined:acquire', untracked);
    handle.acquire();
    const held = await stateIs(handle, 'held');
    expect(held.token).toBe(outer.token);
    await within(handle.release(), 2000, 'the unmount to settle');
    expect(handle.getSnapshot().status).toBe('idle');
    expect(outer.held).toBe(true);
    expect(outer.signal.aborted).toBe(false);
    expect(await holderSessions(dave, 'joined:acquire')).toEqual([carol.session]);
    expect(carol.leases.get('joined:acquire')).toBe(outer);
  });

  it('unmounting a useLock leaves an acquireLock hold to releaseLock', async () => {
    h = await startHarness();
    const carol = await connect(h);
    expect(await carol.acquireLock('joined:prefect')).toBe(true);
    const handle = new SharedLocks(carol).handle('joined:prefect', untracked);
    handle.acquire();
    await stateIs(handle, 'held');
    await within(handle.release(), 2000, 'the unmount to settle');
    expect(await carol.isLockHolder('joined:prefect')).toBe(true);
    await carol.releaseLock('joined:prefect');
    expect(await carol.isLockHolder('joined:prefect')).toBe(false);
  });

  it('release() of a useLock inside a withLock leaves the hold to withLock, which releases it when its function ends', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const controller = new LockController(carol, 'joined:with', untracked);
    await carol.withLock('joined:with', async (lease) => {
      controller.acquire();
      expect((await stateIs(controller, 'held')).token).toBe(lease.token);
      await within(controller.release(), 2000, 'release() to settle');
      expect(lease.held).toBe(true);
      expect(await holderSessions(dave, 'joined:with')).toEqual([carol.session]);
    });
    expect((await dave.status('joined:with')).locked).toBe(false);
  });

  it('a joined hold granted after release() is left to its holder, not handed back', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const outer = await carol.acquire('joined:late');
    if (!outer) throw new Error('not granted');
    const controller = new LockController(carol, 'joined:late', untracked);
    // release() runs once the client granted the acquire, before the controller heard of the grant.
    const acquireGrant = carol.acquireGrant.bind(carol);
    let answered: () => void = () => undefined;
    const granted = new Promise<void>((resolve) => (answered = resolve));
    carol.acquireGrant = async (key, options) => {
      const grant = await acquireGrant(key, options);
      void controller.release();
      answered();
      return grant;
    };
    controller.acquire();
    await within(granted, 2000, 'the grant');
    await within(controller.release(), 2000, 'release() to settle');
    expect(controller.getSnapshot().status).toBe('idle');
    expect(outer.held).toBe(true);
    expect(await holderSessions(dave, 'joined:late')).toEqual([carol.session]);
  });

  it('a hold the useLock made is still released on unmount when an acquire() of the client joined it', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const handle = new SharedLocks(carol).handle('joined:inner', untracked);
    handle.acquire();
    const held = await stateIs(handle, 'held');
    const inner = await carol.acquire('joined:inner');
    expect(inner).toBe(held.lease);
    await within(handle.release(), 2000, 'the unmount to settle');
    expect((await dave.status('joined:inner')).locked).toBe(false);
  });
});

describe('useLock when its lease is released through the client', () => {
  it('turns idle once releaseLock(key) freed the lock, which another client then takes', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const handle = new SharedLocks(carol).handle('released:prefect', untracked);
    handle.acquire();
    await stateIs(handle, 'held');
    await carol.releaseLock('released:prefect');
    expect(handle.getSnapshot()).toEqual({ status: 'idle', timedOut: false });
    expect(await dave.acquireLock('released:prefect', { acquireTimeout: 0 })).toBe(true);
  });

  it('turns idle once the shown lease is released with lease.release()', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const controller = new LockController(carol, 'released:lease', untracked);
    controller.acquire();
    const held = await stateIs(controller, 'held');
    await held.lease.release();
    expect(controller.getSnapshot()).toEqual({ status: 'idle', timedOut: false });
  });

  it('turns idle once the withLock whose hold it joined ends, and acquires a hold of its own after that', async () => {
    h = await startHarness();
    const carol = await connect(h);
    const dave = await connect(h);
    const controller = new LockController(carol, 'released:with', untracked);
    const outerToken = await carol.withLock('released:with', async (lease) => {
      controller.acquire();
      await stateIs(controller, 'held');
      return lease.token;
    });
    expect(controller.getSnapshot().status).toBe('idle');
    controller.acquire();
    const own = await stateIs(controller, 'held');
    expect(own.token).toBeGreaterThan(outerToken);
    await within(controller.release(), 2000, 'release() to settle');
    expect((await dave.status('released:with')).locked).toBe(false);
  });
});
