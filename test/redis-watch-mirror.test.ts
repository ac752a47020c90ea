import type { LockStatus } from '@lockwire/protocol';
import { describe, expect, it } from 'vitest';
import { advance, catchUpEvents, type Shown, StepOnce, stateOf } from '../server/src/redis/shown-state.js';
import { WatchHub, type CatchUpRead, type CatchUpScope, type KeyRead, type WatchSnapshot } from '../server/src/redis/watch-hub.js';
import type { LockEvent } from '../server/src/store.js';

// The parts of a Redis watch catch-up that need no Redis: the key states a
// watch was shown, and how a catch-up's read and the live events heard
// meanwhile are merged into one stream, per watch.

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

/** A catch-up read of `reads`, with `listed` as the locked keys per prefix (none by default). */
const readOf = (reads: KeyRead[], listed = new Map<string, string[]>()): CatchUpRead => ({ reads, listed });

/** A snapshot's further read where the test expects none: no event is heard while its snapshot is read. */
const nothingMore = async (): Promise<KeyRead[]> => {
  throw new Error('no key was expected to be read after the snapshot');
};

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

describe('the key states a watch was shown', () => {
  it('brings a key to a read state with released, dequeued, acquired then queued, counting after each change', () => {
    const shown = stateOf(status('k', [['h1', 1], ['h2', 2]], ['w1', 'w2', 'w3']));
    // During the gap: h1 ended, w2 cancelled, w1 was granted, w4 and w5 queued.
    const now = stateOf(status('k', [['h2', 2], ['w1', 7]], ['w3', 'w4', 'w5']));
    const events = catchUpEvents('k', shown, now, AT);
    expect(events.map(line)).toEqual([
      'released k h1 1 h1 w3',
      'dequeued k w2 - h1 w2',
      'acquired k w1 7 h2 w1',
      'queued k w4 - h2 w2',
      'queued k w5 - h2 w3',
    ]);
    expect(events.every((e) => e.at === AT)).toBe(true);
    // From the read state itself there is nothing to tell.
    expect(catchUpEvents('k', now, now, AT)).toEqual([]);
  });

  it('follows live events without changing a state it was given, and has no state once nobody holds or waits', () => {
    let state: Shown = undefined;
    const seen: Shown[] = [];
    for (const e of [
      event('k', 'acquired', 'a', [1, 0], 1),
      event('k', 'queued', 'b', [1, 1]),
      event('k', 'released', 'a', [0, 1], 1),
      event('k', 'acquired', 'b', [1, 0], 2),
    ]) {
      state = advance(state, e);
      seen.push(state);
    }
    // A read showing b still holding: nothing to tell, so the queue left with b's grant.
    expect(catchUpEvents('k', state, stateOf(status('k', [['b', 2]], [])), AT)).toEqual([]);
    // Each step made a new state; the earlier ones still show what they showed.
    expect(seen.map((s) => `${s?.holders.map((h) => h.session).join(',')}|${s?.queue.map((w) => w.session).join(',')}`)).toEqual(['a|', 'a|b', '|b', 'b|']);
    // An event about someone the state does not show changes nothing.
    expect(advance(state, event('k', 'dequeued', 'x', [1, 0]))).toBe(state);
    expect(advance(state, event('k', 'expired', 'b', [0, 0], 2))).toBeUndefined();
  });

  it('works one event out once per state before it', () => {
    const step = new StepOnce(event('k', 'queued', 'b', [1, 1]));
    const one = stateOf(status('k', [['a', 1]], []));
    const other = stateOf(status('k', [['a', 1]], []));
    const next = step.from(one);
    expect(step.from(one)).toBe(next);
    expect(step.from(other)).not.toBe(next);
    expect(step.from(other)).toBe(step.from(other));
    expect(step.from(undefined)?.queue.map((w) => w.session)).toEqual(['b']);
  });
});

describe('a watch hub starting a watch', () => {
  it('reads the keys its buffered events name that the snapshot did not read: their steps up to the read are dropped, a locked one takes its place in key order within the limit', async () => {
    const hub = new WatchHub();
    const lines: string[] = [];
    const snapshot = deferred<WatchSnapshot>();
    const more = deferred<KeyRead[]>();
    const asked: string[][] = [];
    const started = hub.watch('doc:', 2, (e) => lines.push(line(e)), () => snapshot.promise);
    await Promise.resolve();
    // Heard while the snapshot reads: doc:0 released before the SCAN, doc:1 acquired after
    // the SCAN passed it, c queued on doc:3 (past the limit), doc:2's step the snapshot shows.
    hub.dispatch(event('doc:0', 'released', 'a', [0, 0], 1), 5);
    hub.dispatch(event('doc:2', 'acquired', 'e', [1, 0], 4), 10);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 15);
    hub.dispatch(event('doc:3', 'queued', 'c', [1, 1]), 16);
    snapshot.resolve({
      result: { locks: [status('doc:2', [['e', 4]], [])], truncated: false },
      versions: new Map([['doc:2', 10]]),
      readKeys: (keys) => (asked.push(keys), more.promise),
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Heard while those keys are read: steps after what the read shows.
    hub.dispatch(event('doc:1', 'released', 'b', [0, 0], 2), 20);
    hub.dispatch(event('doc:0', 'acquired', 'd', [1, 0], 3), 25);
    more.resolve([
      { key: 'doc:0', status: status('doc:0', [], []), version: 5 },
      { key: 'doc:1', status: status('doc:1', [['b', 2]], []), version: 15 },
      { key: 'doc:3', status: status('doc:3', [['f', 5]], ['c']), version: 16 },
    ]);
    const handle = await started;
    expect(asked).toEqual([['doc:0', 'doc:1', 'doc:3']]);
    expect(handle.snapshot.locks.map((l) => l.key)).toEqual(['doc:1', 'doc:2']);
    expect(handle.snapshot.truncated).toBe(true);
    expect(lines).toEqual(['released doc:1 b 2 h0 w0', 'acquired doc:0 d 3 h1 w0']);
    hub.dispatch(event('doc:3', 'queued', 'c', [1, 1]), 16);
    hub.dispatch(event('doc:3', 'dequeued', 'c', [1, 0]), 30);
    expect(lines.slice(2)).toEqual(['dequeued doc:3 c - h1 w0']);
  });

  it('fails the watch and keeps nothing of it when reading those keys fails', async () => {
    const hub = new WatchHub();
    const snapshot = deferred<WatchSnapshot>();
    const started = hub.watch('doc:', 100, () => {}, () => snapshot.promise);
    await Promise.resolve();
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 5);
    snapshot.resolve({
      result: { locks: [], truncated: false },
      versions: new Map(),
      readKeys: async () => {
        throw new Error('Redis is down');
      },
    });
    await expect(started).rejects.toThrow('Redis is down');
    expect(hub.active).toBe(false);
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
      readKeys: nothingMore,
    }));
    return { hub, lines, handle };
  }

  it('holds live events heard during the read, drops those of steps the read shows and streams the rest after the catch-up', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<CatchUpRead>();
    const scopes: CatchUpScope[] = [];
    const caught = hub.catchUp(null, (scope) => (scopes.push(scope), read.promise), () => AT);
    await Promise.resolve();
    // While the read runs: the step it will show (version 20), then one after it (30).
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(lines).toEqual([]);
    read.resolve(readOf([{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }]));
    await caught;
    expect(scopes).toEqual([{ keys: ['doc:1'], prefixes: new Map([['doc:', 100]]) }]);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0', 'acquired doc:1 b 2 h1 w0']);
  });

  it('drops the late events of steps a catch-up showed, and streams the next step', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    await hub.catchUp(null, async () => readOf([{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }]), () => AT);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0', 'acquired doc:1 b 2 h1 w0']);
  });

  it('delivers what it held when the read fails, and keeps no state once the last watch ends', async () => {
    const { hub, lines, handle } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<CatchUpRead>();
    const caught = hub.catchUp(null, () => read.promise, () => AT);
    await Promise.resolve();
    hub.dispatch(event('doc:1', 'released', 'a', [0, 0], 1), 20);
    read.reject(new Error('Redis is down'));
    await expect(caught).rejects.toThrow('Redis is down');
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    hub.dispatch(event('doc:2', 'acquired', 'c', [1, 0], 3), 40);
    handle.stop();
    // A new watch of the prefix: nothing of the old one's keys is read again.
    await hub.watch('doc:', 100, () => {}, async () => ({ result: { locks: [], truncated: false }, versions: new Map(), readKeys: nothingMore }));
    const scopes: CatchUpScope[] = [];
    await hub.catchUp(null, async (scope) => (scopes.push(scope), readOf([])), () => AT);
    expect(scopes).toEqual([{ keys: [], prefixes: new Map([['doc:', 100]]) }]);
  });

  it('starts a watch asked for during a catch-up after it, with its own snapshot and none of the catch-up events', async () => {
    const { hub, lines } = await watching([status('doc:1', [['a', 1]], [])], 10);
    const read = deferred<CatchUpRead>();
    const caught = hub.catchUp(null, () => read.promise, () => AT);
    await Promise.resolve();
    let snapshotTaken = false;
    const late: string[] = [];
    const second = hub.watch('doc:', 100, (e) => late.push(line(e)), async () => {
      snapshotTaken = true;
      return { result: { locks: [], truncated: false }, versions: new Map([['doc:1', 20]]), readKeys: nothingMore };
    });
    await Promise.resolve();
    expect(snapshotTaken).toBe(false);
    read.resolve(readOf([{ key: 'doc:1', status: status('doc:1', [], []), version: 20 }]));
    await caught;
    await second;
    expect(snapshotTaken).toBe(true);
    expect(lines).toEqual(['released doc:1 a 1 h0 w0']);
    expect(late).toEqual([]);
    hub.dispatch(event('doc:1', 'acquired', 'b', [1, 0], 2), 30);
    expect(late).toEqual(['acquired doc:1 b 2 h1 w0']);
  });

  /** Opens a watch of `prefix` on `hub` whose snapshot shows `locks` read at `version`; the events it gets. */
  async function open(hub: WatchHub, prefix: string, locks: LockStatus[], version: number, limit = 100) {
    const got: LockEvent[] = [];
    await hub.watch(prefix, limit, (e) => got.push(e), async () => ({
      result: { locks: locks.slice(0, limit), truncated: locks.length > limit },
      versions: new Map(locks.slice(0, limit).map((l) => [l.key, version])),
      readKeys: nothingMore,
    }));
    return got;
  }

  it('hands two watches shown the same states the same event objects at a catch-up, also after live events moved both on', async () => {
    const hub = new WatchHub();
    const first = await open(hub, 'doc:', [status('doc:1', [['a', 1]], [])], 10);
    const second = await open(hub, 'doc:', [status('doc:1', [['a', 1]], [])], 10);
    hub.dispatch(event('doc:1', 'queued', 'b', [1, 1]), 20);
    await hub.catchUp(null, async () => readOf([{ key: 'doc:1', status: status('doc:1', [['c', 3]], []), version: 30 }]), () => AT);
    expect(first.map(line)).toEqual(['queued doc:1 b - h1 w1', 'released doc:1 a 1 h0 w1', 'dequeued doc:1 b - h0 w0', 'acquired doc:1 c 3 h1 w0']);
    // One state per step for both watches, so one list of events made for both.
    expect(second).toHaveLength(first.length);
    first.forEach((e, i) => expect(second[i]).toBe(e));
    // Both now hold the read state: the next catch-up's events are shared too.
    await hub.catchUp(null, async () => readOf([{ key: 'doc:1', status: status('doc:1', [], []), version: 40 }]), () => AT);
    expect(first.slice(4).map(line)).toEqual(['released doc:1 c 3 h0 w0']);
    expect(second[4]).toBe(first[4]);
  });

  it('catches each watch up from what it was shown: a watch whose snapshot is newer gets only the steps after it', async () => {
    const hub = new WatchHub();
    const old = await open(hub, 'doc:', [status('doc:1', [['a', 1]], [])], 10);
    // The steps at 20 and 30 never reached this node; the newer snapshot shows them.
    const fresh = await open(hub, 'doc:', [status('doc:1', [['b', 2]], [])], 30);
    await hub.catchUp(null, async () => readOf([{ key: 'doc:1', status: status('doc:1', [['b', 2]], ['c']), version: 40 }]), () => AT);
    expect(old.map(line)).toEqual(['released doc:1 a 1 h0 w0', 'acquired doc:1 b 2 h1 w0', 'queued doc:1 c - h1 w1']);
    expect(fresh.map(line)).toEqual(['queued doc:1 c - h1 w1']);
    // The event both need is one object: a session with both watches sends it once.
    expect(fresh[0]).toBe(old[2]);
  });

  it('catches a watch up on a key past its limit only if it was shown something of it, even when another watch brings the key into the read', async () => {
    const hub = new WatchHub();
    const wide = await open(hub, 'doc:', [status('doc:1', [['a', 1]], []), status('doc:2', [['a', 2]], [])], 10, 1);
    const narrow = await open(hub, 'doc:2', [status('doc:2', [['a', 2]], [])], 10);
    const scopes: CatchUpScope[] = [];
    await hub.catchUp(
      null,
      async (scope) => (
        scopes.push(scope),
        readOf(
          [
            { key: 'doc:1', status: status('doc:1', [['a', 1]], []), version: 10 },
            { key: 'doc:2', status: status('doc:2', [['b', 3]], []), version: 30 },
          ],
          new Map([
            ['doc:', ['doc:1']],
            ['doc:2', ['doc:2']],
          ]),
        )
      ),
      () => AT,
    );
    expect(scopes).toEqual([{ keys: ['doc:1', 'doc:2'], prefixes: new Map([['doc:', 1], ['doc:2', 100]]) }]);
    expect(narrow.map(line)).toEqual(['released doc:2 a 2 h0 w0', 'acquired doc:2 b 3 h1 w0']);
    expect(wide).toEqual([]);
    // Live events of the key still reach the wide watch, as before the catch-up.
    hub.dispatch(event('doc:2', 'released', 'b', [0, 0], 3), 40);
    expect(wide.map(line)).toEqual(['released doc:2 b 3 h0 w0']);
  });
});
