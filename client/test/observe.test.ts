import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type LockEvent, type Watch } from '@lockwire/client';
import { startFakeServer } from './fake-server.js';
import { abortedWith, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let alice: LockClient;
let bob: LockClient;

beforeEach(async () => {
  h = await startHarness();
  alice = await h.connect();
  bob = await h.connect();
});
afterEach(() => h.close());

describe('status and list', () => {
  it('status of a free key is unlocked with no holders and no queue', async () => {
    expect(await alice.status('free')).toEqual({
      key: 'free',
      locked: false,
      mode: null,
      holders: [],
      queue: [],
      heldByYou: false,
    });
  });

  it('status shows holders, the queue in grant order and heldByYou for the caller', async () => {
    await alice.acquire('doc:1', { meta: { user: 'ana' } });
    let queued!: () => void;
    const inQueue = new Promise<void>((resolve) => (queued = resolve));
    const waiting = bob.acquire('doc:1', { mode: 'shared', meta: { user: 'bo' }, onQueued: () => queued() });
    await inQueue;
    const status = await alice.status('doc:1');
    expect(status).toMatchObject({ locked: true, mode: 'exclusive', heldByYou: true });
    expect(status.queue).toEqual([expect.objectContaining({ session: bob.session, mode: 'shared', meta: { user: 'bo' } })]);
    expect(await bob.isLockHolder('doc:1')).toBe(false);
    await alice.releaseLock('doc:1');
    expect((await waiting)?.mode).toBe('shared');
    expect(await bob.isLockHolder('doc:1')).toBe(true);
  });

  it('list returns the locked keys under a prefix in key order and says when it truncated', async () => {
    await alice.acquire('doc:b');
    await alice.acquire('doc:a');
    await bob.acquire('doc:c');
    await bob.acquire('other');
    const all = await alice.list({ prefix: 'doc:' });
    expect(all.locks.map((lock) => lock.key)).toEqual(['doc:a', 'doc:b', 'doc:c']);
    expect(all.truncated).toBe(false);
    const some = await alice.list({ prefix: 'doc:', limit: 2 });
    expect(some.locks.map((lock) => lock.key)).toEqual(['doc:a', 'doc:b']);
    expect(some.truncated).toBe(true);
    expect((await alice.list()).locks).toHaveLength(4);
  });
});

describe('watch', () => {
  it('starts with a snapshot and then reports every change under the prefix, only that prefix', async () => {
    const held = await alice.acquire('doc:1');
    const events: LockEvent[] = [];
    const watch = await bob.watch('doc:', (event) => events.push(event));
    expect(watch.snapshot.locks.map((lock) => lock.key)).toEqual(['doc:1']);

    await alice.acquire('other:1');
    await held?.release();
    const next = await alice.acquire('doc:2', { meta: { tab: 3 } });
    await bob.ping();
    expect(events.map((event) => [event.event, event.key])).toEqual([
      ['released', 'doc:1'],
      ['acquired', 'doc:2'],
    ]);
    expect(events[1]).toMatchObject({ session: alice.session, token: next?.token, meta: { tab: 3 }, holders: 1 });
    await watch.close();
  });

  it('close() stops the events and is idempotent', async () => {
    const events: LockEvent[] = [];
    const watch = await bob.watch('doc:', (event) => events.push(event));
    const closing = watch.close();
    expect(watch.close()).toBe(closing);
    await closing;
    expect(watch.signal.aborted).toBe(true);
    await alice.acquire('doc:3');
    await bob.ping();
    expect(events).toEqual([]);
  });

  it('two watches of the same prefix share one server watch until the last one closes', async () => {
    const first: string[] = [];
    const second: string[] = [];
    const a = await bob.watch('room:', (event) => first.push(event.event));
    const b = await bob.watch('room:', (event) => second.push(event.event));
    await a.close();
    await alice.acquire('room:1');
    await bob.ping();
    expect(first).toEqual([]);
    expect(second).toEqual(['acquired']);
    await b.close();
  });

  it('a session keeps one server watch per prefix: with maxWatchesPerSession 1, a second prefix is taken only once the last watch of the first has closed', async () => {
    const limited = await startHarness({ limits: { maxWatchesPerSession: 1 } });
    try {
      const carol = await limited.connect();
      const a = await carol.watch('room:', () => undefined);
      const b = await carol.watch('room:', () => undefined);
      await a.close();
      expect(await within(carol.watch('other:', () => undefined).catch((error: unknown) => error))).toMatchObject({ code: 'bad_request' });
      await b.close();
      expect((await within(carol.watch('other:', () => undefined))).prefix).toBe('other:');
    } finally {
      await limited.close();
    }
  });

  it('a refused watch whose prefix lost its other watches meanwhile unwatches it, freeing the server slot', async () => {
    const limited = await startHarness({ limits: { maxWatchesPerSession: 1 } });
    try {
      const carol = await limited.connect();
      const a = await carol.watch('doc:', () => undefined);
      const refused = carol.watch('doc:', () => undefined, { limit: 0 }).catch((error: unknown) => error);
      // The refused watch still counts for doc: here, so closing the other one sends no unwatch.
      await a.close();
      expect(await within(refused)).toMatchObject({ name: 'LockError', code: 'bad_request' });
      // With doc: still watched, the server would refuse a second prefix (maxWatchesPerSession 1).
      const other = await within(carol.watch('other:', () => undefined));
      expect(other.prefix).toBe('other:');
    } finally {
      await limited.close();
    }
  });

  it('a watch closed by the callback of another watch of its prefix gets no more of the event being delivered', async () => {
    const seen: string[] = [];
    let second: Watch | undefined;
    await bob.watch('doc:', (event) => {
      seen.push(`first ${event.key}`);
      void second?.close();
    });
    second = await bob.watch('doc:', (event) => seen.push(`second ${event.key}`));
    await alice.acquire('doc:1');
    await bob.ping();
    expect(seen).toEqual(['first doc:1']);
  });

  it('client.close() from a watch callback: no other watch gets the event being delivered', async () => {
    const seen: string[] = [];
    await bob.watch('doc:', (event) => {
      seen.push(`first ${event.key}`);
      void bob.close();
    });
    const second = await bob.watch('doc:', (event) => seen.push(`second ${event.key}`));
    const narrow = await bob.watch('doc:1', (event) => seen.push(`narrow ${event.key}`));
    await alice.acquire('doc:1');
    await abortedWith(second.signal);
    expect(narrow.signal.aborted).toBe(true);
    expect(seen).toEqual(['first doc:1']);
  });

  it('a closed connection ends its watches', async () => {
    const watch = await bob.watch('', () => undefined);
    await bob.close();
    expect(watch.signal.aborted).toBe(true);
    await watch.close();
  });
});

describe('watch routing', () => {
  it('one event frame reaches every watch whose prefix matches its key, once each', async () => {
    const fake = await startFakeServer();
    try {
      const client = await LockClient.connect(fake.url, { reconnect: false });
      const wide: string[] = [];
      const narrow: string[] = [];
      const other: string[] = [];
      const wideWatch = await client.watch('doc:', (event) => wide.push(event.key));
      await client.watch('doc:4', (event) => narrow.push(event.key));
      await client.watch('room:', (event) => other.push(event.key));
      const server = await fake.connection(0);
      const event = { type: 'event', event: 'acquired', session: 'x', token: 1, mode: 'exclusive', meta: null, holders: 1, waiters: 0, at: 0 };
      server.send({ ...event, key: 'doc:42' });
      server.send({ ...event, key: 'doc:5' });
      await client.ping();
      expect(wide).toEqual(['doc:42', 'doc:5']);
      expect(narrow).toEqual(['doc:42']);
      expect(other).toEqual([]);

      await wideWatch.close();
      expect(await within(server.nextRequest('unwatch'))).toMatchObject({ prefix: 'doc:' });
      server.send({ ...event, key: 'doc:43' });
      await client.ping();
      expect(wide).toEqual(['doc:42', 'doc:5']);
      expect(narrow).toEqual(['doc:42', 'doc:43']);
      await client.close();
    } finally {
      await fake.close();
    }
  });
});

describe('overlapping watches on a real server', () => {
  it('each watch sees an event of its prefix once, and closing one keeps the other', async () => {
    const wide: string[] = [];
    const narrow: string[] = [];
    const wideWatch = await bob.watch('doc:', (event) => wide.push(`${event.event} ${event.key}`));
    const narrowWatch = await bob.watch('doc:4', (event) => narrow.push(`${event.event} ${event.key}`));
    await alice.acquire('doc:42');
    await alice.acquire('doc:5');
    await bob.ping();
    expect(wide).toEqual(['acquired doc:42', 'acquired doc:5']);
    expect(narrow).toEqual(['acquired doc:42']);

    await narrowWatch.close();
    await alice.releaseLock('doc:42');
    await bob.ping();
    expect(wide).toEqual(['acquired doc:42', 'acquired doc:5', 'released doc:42']);
    expect(narrow).toEqual(['acquired doc:42']);
    await wideWatch.close();
  });
});
