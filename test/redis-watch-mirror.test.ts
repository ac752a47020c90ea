import type { LockStatus } from '@lockwire/protocol';
import { describe, expect, it } from 'vitest';
import { WatchHub, type CatchUpScope, type KeyRead } from '../server/src/redis/watch-hub.js';
import { WatchMirror } from '../server/src/redis/watch-mirror.js';
import type { LockEvent } from '../server/src/store.js';

// The parts of a Redis watch catch-up that need no Redis: what the node
// remembers its watchers were shown, and how a catch-up's read and the live
// events heard meanwhile are merged into one stream.

const AT = 1_000;

function event(key: string, kind: LockEvent['event'], session: string, counts: [number, number], token?: number): LockEvent {
  const e: LockEvent = { key, event: kind, session, mode: 'exclusive', meta: null, holders: counts[0], waiters: counts[1], at: AT };
  if (token !== undefined) e.token = token;
  return e;
}

function status(key: string, holders: Array<[string, number]>, queue: string[]): LockStatus {
  return {
    key,
    locked: holders.length > 0,
    mode: holders.length > 0 ? 'exclusive' : null,
    holders: holders.map(([session, token]) => ({ session, token, mode: 'exclusive', since: 1, expiresAt: null, meta: null })),
    queue: queue.map((session) => ({ session, mode: 'exclusive', since: 1, meta: null })),
  };
}

/** One line per event: `<event> <key> <session> <token|-> h<holders> w<waiters>`. */
const line = (e: LockEvent) => `${e.event} ${e.key} ${e.session} ${e.token ?? '-'} h${e.holders} w${e.waiters}`;

/** A promise and its resolver, for a read the test finishes when it wants. */
function deferred<T>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('what a node remembers its watchers were shown', () => {
  it('brings a key to a read state with released, dequeued, acquired then queued, counting after each change', () => {
    const mirror = new WatchMirror();
    mirror.learn('k', status('k', [['h1', 1], ['h2', 2]], ['w1', 'w2', 'w3']));
    // During the gap: h1 ended, w2 cancelled, w1 was granted, w4 and w5 queued.
    const events = mirror.catchUp('k', status('k', [['h2', 2], ['w1', 7]], ['w3', 'w4', 'w5']), AT);
    expect(events.map(line)).toEqual([
      'released k h1 1 h1 w3',
      'dequeued k w2 - h1 w2',
      'acquired k w1 7 h2 w1',
      'queued k w4 - h2 w2',
      'queued k w5 - h2 w3',
    ]);
    expect(events.every((e) => e.at === AT)).toBe(true);
    // It now shows the read state: a second look finds nothing to tell.
    expect(mirror.catchUp('k', status('k', [['h2', 2], ['w1', 7]], ['w3', 'w4', 'w5']), AT)).toEqual([]);
  });

  it('follows live events and forgets a key once nobody holds or waits for it', () => {
    const mirror = new WatchMirror();
    mirror.apply(event('k', 'acquired', 'a', [1, 0], 1));
    mirror.apply(event('k', 'queued', 'b', [1, 1]));
    mirror.apply(event('k', 'released', 'a', [0, 1], 1));
    mirror.apply(event('k', 'acquired', 'b', [1, 0], 2));
    expect([...mirror.keys()]).toEqual(['k']);
    // A read showing b still holding: nothing to tell, so the queue left with b's grant.
    expect(mirror.catchUp('k', status('k', [['b', 2]], []), AT)).toEqual([]);
    mirror.apply(event('k', 'expired', 'b', [0, 0], 2));
    expect([...mirror.keys()]).toEqual([]);
  });
});

describe('a watch hub catching its watchers up', () => {
  /** A hub with one watch of `doc:` whose snapshot shows `locks` read at `version`, and the lines it streamed. */
  async function watching(locks: LockStatus[], version: number) {
    const hub = new WatchHub();
    const lines: string[] = [];
    const handle = await hub.watch('doc:', 100, (e) => lines.push(line(e)), async () => ({
      result: { locks, truncated: false },
      versions: new Map(locks.map((l) => [l.key, version])),
    }));
    return { hub, lines, handle };
  }

  it('holds live events heard during the read, drops those of steps the read shows and streams the rest after the catch-up', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<KeyRead[]>();
    const scopes: CatchUpScope[] = [];
    const caught = hub.catchUp(null, (scope) => (scopes.push(scope), read.promise), () => AT);
    await Promise.resolve();
    // While the read runs: the step it will show (version 20), then one after it (30).
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(lines).toEqual([]);
    read.resolve([{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }]);
    await caught;
    expect(scopes).toEqual([{ keys: ['doc:1'], prefixes: new Map([['doc:', 100]]) }]);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0', 'acquired doc:1 b 2 h1 w0']);
  });

  it('drops the late events of steps a catch-up showed, and streams the next step', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    await hub.catchUp(null, async () => [{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }], () => AT);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0', 'acquired doc:1 b 2 h1 w0']);
  });

  it('delivers what it held when the read fails, and keeps no state once the last watch ends', async () => {
    const { hub, lines, handle } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<KeyRead[]>();
    const caught = hub.catchUp(null, () => read.promise, () => AT);
    await Promise.resolve();
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    read.reject(new Error('Redis is down'));
    await expect(caught).rejects.toThrow('Redis is down');
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    hub.dispatch(event('doc:2', 'acquired', 'c', [1, 0], 3), 40);
    handle.stop();
    // A new watch of the prefix: nothing of the old one's keys is read again.
    await hub.watch('doc:', 100, () => {}, async () => ({ result: { locks: [], truncated: false }, versions: new Map() }));
    const scopes: CatchUpScope[] = [];
    await hub.catchUp(null, async (scope) => (scopes.push(scope), []), () => AT);
    expect(scopes).toEqual([{ keys: [], prefixes: new Map([['doc:', 100]]) }]);
  });

  it('starts a watch asked for during a catch-up after it, with its own snapshot and none of the catch-up events', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<KeyRead[]>();
    const caught = hub.catchUp(null, () => read.promise, () => AT);
    await Promise.resolve();
    let snapshotTaken = false;
    const late: string[] = [];
    const second = hub.watch('doc:', 100, (e) => late.push(line(e)), async () => {
      snapshotTaken = true;
      return { result: { locks: [], truncated: false }, versions: new Map([['doc:1', 20]]) };
    });
    await Promise.resolve();
    expect(snapshotTaken).toBe(false);
    read.resolve([{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }]);
    await caught;
    await second;
    expect(snapshotTaken).toBe(true);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    expect(late).toEqual([]);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(late).toEqual(['acquired doc:1 b 2 h1 w0']);
  });
});
