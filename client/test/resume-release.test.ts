import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createLockServer,
  createManualClock,
  createMemoryStore,
  LockError as ServerLockError,
  type LockServer,
  type LockStore,
} from '@lockwire/server';
import { LockClient, type Lease, type LockEvent } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { fastReconnect, nextEvent, within } from './fixtures.js';
import { pauseGate, settled } from './pause-gate.js';

vi.mock('../src/reconnect.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/reconnect.js')>();
  const { pauseGate: gate } = await import('./pause-gate.js');
  return { ...actual, pause: gate.wrap(actual.pause) };
});

/** A memory store whose `release` answers with the queued refusals first, and records every key it is asked to release. */
function refusingStore(store: LockStore) {
  const refusals: ServerLockError[] = [];
  const releases: string[] = [];
  const wrapped: LockStore = {
    ...store,
    async release(session, key) {
      releases.push(key);
      const refusal = refusals.shift();
      if (refusal) throw refusal;
      return store.release(session, key);
    },
  };
  return { store: wrapped, refusals, releases };
}

const unavailable = () => new ServerLockError('store_unavailable', 'the store is unreachable');

let server: LockServer;
let proxy: TcpProxy;
let store: ReturnType<typeof refusingStore>;
let observer: LockClient;
let client: LockClient;
/** Events under `doc:` as the observer saw them, e.g. `released doc:a`. */
let seen: string[];
let onSeen: (() => void) | undefined;

beforeEach(async () => {
  const clock = createManualClock();
  store = refusingStore(createMemoryStore({ clock }));
  server = await createLockServer({ port: 0, clock, heartbeatInterval: 0, sessionGrace: 30_000, store: store.store });
  proxy = await startTcpProxy(server.port);
  observer = await LockClient.connect(server.url, { reconnect: false });
  seen = [];
  await observer.watch('doc:', (event: LockEvent) => {
    seen.push(`${event.event} ${event.key}`);
    onSeen?.();
  });
  client = await LockClient.connect(proxy.url(server.url), { reconnect: fastReconnect });
});

afterEach(async () => {
  pauseGate.reset();
  await client.close();
  await observer.close();
  await proxy.close();
  await server.close();
});

/** Resolves once the observer saw `event` (bounded). */
function observed(event: string, ms = 2000): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      onSeen = () => {
        if (seen.includes(event)) resolve();
      };
      onSeen();
    }),
    ms,
    `the observer to see ${event}`,
  );
}

/**
 * Holds `key`, drops the connection, releases the lease while offline (the
 * server keeps the hold for the session's grace) and resumes: the welcome
 * gives back a hold no lease stands for, which the client releases.
 */
async function resumeWithUnclaimedHold(key: string): Promise<Lease> {
  const lease = await client.acquire(key);
  if (!lease) throw new Error(`${key} not granted`);
  proxy.block();
  const down = nextEvent(client, 'disconnect');
  proxy.cut();
  await down;
  await lease.release();
  const reconnected = nextEvent(client, 'reconnect');
  proxy.unblock();
  expect(await reconnected).toMatchObject({ resumed: true, session: client.session });
  return lease;
}

describe('releasing the holds a resume gave back that no lease stands for', () => {
  it('a refused release is sent again with backoff until the server accepts it', async () => {
    store.refusals.push(unavailable(), unavailable());
    await resumeWithUnclaimedHold('doc:a');
    await observed('released doc:a');
    expect(store.releases).toEqual(['doc:a', 'doc:a', 'doc:a']);
    expect((await observer.status('doc:a')).locked).toBe(false);
  });

  it('stops asking once the client acquires the key again, so the new hold is kept', async () => {
    store.refusals.push(unavailable());
    const old = await resumeWithUnclaimedHold('doc:a');
    pauseGate.holding = true;
    const retry = await pauseGate.next();
    expect(retry.ms).toBe(100);

    // The re-acquire gets the hold the session kept (same token), and the client now stands for it.
    const lease = await client.acquire('doc:a');
    expect(lease?.token).toBe(old.token);
    expect(retry.signal.aborted).toBe(true);
    retry.resume();
    await settled();
    await client.ping();
    expect(store.releases).toEqual(['doc:a']);
    expect((await observer.status('doc:a')).holders.map((h) => [h.session, h.token])).toEqual([
      [client.session, old.token],
    ]);
    expect(lease?.held).toBe(true);
  });

  it('a not_holder answer ends it: nothing is left to release', async () => {
    store.refusals.push(new ServerLockError('not_holder', 'key: this session does not hold "doc:a"'));
    await resumeWithUnclaimedHold('doc:a');
    pauseGate.holding = true;
    await client.ping();
    await settled();
    expect(store.releases).toEqual(['doc:a']);
    expect(pauseGate.waiting).toBe(0);
  });

  it('a second resume while a retry waits ends that retry, and the new resume releases the hold once', async () => {
    store.refusals.push(unavailable());
    await resumeWithUnclaimedHold('doc:a');
    pauseGate.holding = true;
    const retry = await pauseGate.next();
    pauseGate.holding = false;

    const again = nextEvent(client, 'reconnect');
    proxy.cut();
    expect(await again).toMatchObject({ resumed: true });
    expect(retry.signal.aborted).toBe(true);
    await observed('released doc:a');
    retry.resume();
    await settled();
    await client.ping();
    // One refused on the first resumed connection, one accepted on the second; the old retry sent nothing more.
    expect(store.releases).toEqual(['doc:a', 'doc:a']);
    expect(seen.filter((event) => event === 'released doc:a')).toHaveLength(1);
  });

  it('closing the client ends a retry that is waiting', async () => {
    store.refusals.push(unavailable());
    await resumeWithUnclaimedHold('doc:a');
    pauseGate.holding = true;
    const retry = await pauseGate.next();
    await client.close();
    expect(retry.signal.aborted).toBe(true);
    await observed('released doc:a');
    expect(store.releases).toEqual(['doc:a']);
  });
});
