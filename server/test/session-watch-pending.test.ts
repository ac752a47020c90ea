import { afterEach, describe, expect, it } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStatus } from '@lockwire/protocol';
import type { LockEvent, WatchHandle } from '../src/store.js';
import { createStubStore, RawClient, within } from './server-harness.js';

// A session sends a watch while an earlier watch of the same prefix (or an
// overlapping one) streams, and the new one's store call is still pending:
// the store calls are held by the test, their streams driven by hand.

const servers: LockServer[] = [];
const clients: RawClient[] = [];
let raw: RawSocket | undefined;

afterEach(async () => {
  raw?.destroy();
  raw = undefined;
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function deferred<T>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const event = (key: string, token: number): LockEvent => ({
  key, event: 'acquired', session: 's1', token, mode: 'exclusive', meta: null, holders: 1, waiters: 0, at: 1,
});

/** A pending store watch call: its sink, and how the test ends it. */
interface HeldWatch {
  readonly sink: (event: LockEvent) => void;
  readonly stopped: () => boolean;
  /** Resolves once its stream is stopped. */
  readonly whenStopped: Promise<void>;
  /** Answers with a snapshot of `locks` (none unless given). */
  answer(locks?: LockStatus[]): void;
  fail(): void;
}

/**
 * A server over a stub store and a client of it. `sendHeld(id, prefix)`
 * sends a watch whose store call waits for the test, and resolves once the
 * store has it; other watch calls answer at once.
 */
async function start() {
  const stub = createStubStore();
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store });
  servers.push(server);
  const { client } = await RawClient.connect(server.url);
  clients.push(client);
  const answerAtOnce = stub.behaviour.watch;
  const sendHeld = (id: number, prefix: string): Promise<HeldWatch> => {
    const held = new Promise<HeldWatch>((caught) => {
      stub.behaviour.watch = (_prefix, _limit, _viewer, sink) => {
        stub.behaviour.watch = answerAtOnce;
        const handle = deferred<WatchHandle>();
        const stop = deferred<void>();
        let stopped = false;
        caught({
          sink,
          stopped: () => stopped,
          whenStopped: stop.promise,
          answer: (locks = []) =>
            handle.resolve({
              snapshot: { locks, truncated: false },
              stop: () => {
                stopped = true;
                stop.resolve();
              },
            }),
          fail: () => handle.reject(new Error('the watch read failed')),
        });
        return handle.promise;
      };
    });
    client.send({ op: 'watch', id, prefix });
    return held;
  };
  return { stub, client, sendHeld };
}

/** The client's frames from now to the reply to `id`, as `reply <id> [<keys shown, or ok>]` or `event <key> <event>`. */
async function framesTo(client: RawClient, id: unknown): Promise<string[]> {
  const frames: string[] = [];
  for (;;) {
    const f = await client.next();
    const shown = Array.isArray(f.locks) ? (f.locks as LockStatus[]).map((lock) => lock.key).join() : String(f.ok);
    frames.push(f.type === 'event' ? `event ${String(f.key)} ${String(f.event)}` : `reply ${String(f.id)} [${shown}]`);
    if (f.type === 'reply' && f.id === id) return frames;
  }
}

describe('unwatch while a watch of the same prefix again takes its snapshot', () => {
  it('stops the stream being replaced: its events after the unwatch reply are not sent', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const pending = await sendHeld(2, 'doc:');
    expect(await client.request({ op: 'unwatch', id: 3, prefix: 'doc:' })).toEqual({ type: 'reply', id: 3, ok: true });
    expect(stub.sinks).toEqual([]);
    first?.(event('doc:1', 1));
    pending.answer();
    expect(await client.reply(2)).toMatchObject({ ok: true, locks: [] });
    expect(pending.stopped()).toBe(true);
    // The watch answered after the unwatch does not go live either.
    pending.sink(event('doc:2', 2));
    expect(await client.request({ op: 'ping', id: 4 })).toMatchObject({ ok: true });
    expect(client.inbox).toEqual([]);
  });

  it('sent in one write with the watch again and an acquire, stops the stream before the acquire (memory store)', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    servers.push(server);
    raw = await RawSocket.open(server.url);
    raw.write(RawSocket.json({ op: 'watch', id: 1, prefix: 'k' }));
    await raw.until((frames) => frames.some((f) => f.id === 1), 'the first watch reply');
    raw.write(
      RawSocket.json({ op: 'watch', id: 2, prefix: 'k' }),
      RawSocket.json({ op: 'unwatch', id: 3, prefix: 'k' }),
      RawSocket.json({ op: 'acquire', id: 4, key: 'k1' }),
      RawSocket.json({ op: 'ping', id: 5 }),
    );
    const frames = await raw.until((all) => all.some((f) => f.id === 5), 'the pong');
    const sequence = frames
      .slice(2)
      .map((f) => (f.type === 'event' ? `event ${String(f.key)} ${String(f.event)}` : `${String(f.type)} ${String(f.id)}`));
    expect(sequence).toEqual(['reply 2', 'reply 3', 'reply 4', 'reply 5']);
  });
});

describe('a watch of the same prefix again that fails', () => {
  it('leaves the stream it would have replaced live, also when a later watch of the prefix fails too', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const pendingSecond = await sendHeld(2, 'doc:');
    const pendingThird = await sendHeld(3, 'doc:');
    pendingSecond.fail();
    expect(await client.reply(2)).toMatchObject({ ok: false, error: { code: 'internal' } });
    pendingThird.fail();
    expect(await client.reply(3)).toMatchObject({ ok: false, error: { code: 'internal' } });
    first?.(event('doc:1', 1));
    expect(await client.next()).toEqual({ type: 'event', ...event('doc:1', 1) });
    // Still one watch of the prefix: an unwatch stops the first stream.
    expect(await client.request({ op: 'unwatch', id: 4, prefix: 'doc:' })).toMatchObject({ ok: true });
    expect(stub.sinks).toEqual([]);
  });

  it('leaves the stream it would have replaced to a later watch of the prefix, which stops it once answered', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const pendingSecond = await sendHeld(2, 'doc:');
    const pendingThird = await sendHeld(3, 'doc:');
    pendingSecond.fail();
    expect(await client.reply(2)).toMatchObject({ ok: false });
    expect(stub.sinks).toHaveLength(1);
    pendingThird.answer();
    expect(await client.reply(3)).toMatchObject({ ok: true, locks: [] });
    // One stream of the prefix: the third watch's.
    expect(stub.sinks).toEqual([]);
    pendingThird.sink(event('doc:1', 1));
    expect(await client.next()).toEqual({ type: 'event', ...event('doc:1', 1) });
  });
});

describe('a watch whose snapshot shows an event that follows one it does not show', () => {
  // The snapshot was read key by key: doc:1 before its release, doc:2 after
  // its acquire. The new stream delivers the release and not the acquire.
  const released: LockEvent = { ...event('doc:1', 1), event: 'released', holders: 0 };
  const acquired = event('doc:2', 2);

  for (const [name, firstPrefix] of [
    ['watching the watched prefix again', 'doc:'],
    ['watching a prefix inside a watched one', ''],
  ] as const) {
    it(`${name}: sends the event it shows before the reply and the one it does not after it`, async () => {
      const { stub, client, sendHeld } = await start();
      await client.request({ op: 'watch', id: 1, prefix: firstPrefix });
      const [first] = stub.sinks;
      const pending = await sendHeld(2, 'doc:');
      first?.(released);
      first?.(acquired);
      pending.sink(released);
      pending.answer();
      expect(await client.next()).toEqual({ type: 'event', ...acquired });
      expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
      expect(await client.next()).toEqual({ type: 'event', ...released });
      expect(await client.request({ op: 'ping', id: 3 })).toMatchObject({ ok: true });
      expect(client.inbox).toEqual([]);
    });
  }

  it('keeps the order of events of one key: one after a held event of its key waits for it', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [first] = stub.sinks;
    const pending = await sendHeld(2, 'doc:');
    const reacquired = event('doc:1', 3);
    first?.(released);
    first?.(reacquired);
    pending.sink(released);
    pending.answer();
    expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
    expect(await client.next()).toEqual({ type: 'event', ...released });
    expect(await client.next()).toEqual({ type: 'event', ...reacquired });
  });
});

describe('a watch of the same prefix again, replaced by another before its reply', () => {
  it('still gets the events its stream delivered after its snapshot reply', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const pendingSecond = await sendHeld(2, 'doc:');
    const acquired = event('doc:1', 1);
    wide?.(acquired);
    pendingSecond.sink(acquired);
    const pendingThird = await sendHeld(3, 'doc:');
    // A watch of another prefix answers meanwhile: the event still waits for the second snapshot.
    expect(await client.request({ op: 'watch', id: 4, prefix: 'x' })).toMatchObject({ ok: true });
    pendingSecond.answer();
    expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
    expect(await client.next()).toEqual({ type: 'event', ...acquired });
    pendingThird.answer();
    expect(await client.next()).toMatchObject({ type: 'reply', id: 3, ok: true });
  });
});

describe('a ping while a watch of the session takes its snapshot', () => {
  const acquired = event('doc:1', 1);

  it('is answered after an event another watch of the session owes it, held back for that snapshot', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const pending = await sendHeld(2, 'doc:');
    wide?.(acquired);
    client.send({ op: 'ping', id: 'p' });
    // A round trip after the ping: an unwaiting ping would be answered by now.
    expect(await client.request({ op: 'status', id: 3, key: 'x' })).toMatchObject({ ok: true });
    pending.answer();
    await client.reply('p');
    expect(client.inbox.map((f) => `${String(f.type)} ${String(f.id ?? f.key)}`)).toEqual(['event doc:1', 'reply 2']);
  });

  it('waits for no watch started after the events it waits for', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const pendingNarrow = await sendHeld(2, 'doc:');
    wide?.(acquired);
    client.send({ op: 'ping', id: 'p' });
    const pendingLater = await sendHeld(3, 'doc:1');
    pendingNarrow.answer();
    // The later watch reads its snapshot after the acquire: the event goes before its reply, and the ping's.
    expect(await client.next()).toEqual({ type: 'event', ...acquired });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 'p', ok: true });
    pendingLater.answer();
    expect(await client.next()).toMatchObject({ type: 'reply', id: 3, ok: true });
  });
});

describe('watches of one prefix whose store calls answer out of order', () => {
  // doc:1 is acquired after the earlier snapshots and before the latest one,
  // then released after the latest one.
  const acquired = event('doc:1', 1);
  const released: LockEvent = { ...acquired, event: 'released', holders: 0 };
  const held: LockStatus = {
    key: 'doc:1', locked: true, mode: 'exclusive', holders: [{ session: 's1', token: 1, mode: 'exclusive', since: 1, expiresAt: null, meta: null }], queue: [],
  };

  /** The client's frames from now to the pong of a ping, as `framesTo` gives them. */
  async function framesToPong(client: RawClient): Promise<string[]> {
    client.send({ op: 'ping', id: 'p' });
    return [...(await framesTo(client, 'p')).slice(0, -1), 'pong'];
  }

  it('answers three watches sent back to back in request order, each with its own snapshot, and the last one goes live', async () => {
    const { client, sendHeld } = await start();
    const first = await sendHeld(1, 'doc:');
    const second = await sendHeld(2, 'doc:');
    const third = await sendHeld(3, 'doc:');
    first.sink(acquired);
    second.sink(acquired);
    third.answer([held]);
    second.answer();
    first.answer();
    third.sink(released);
    // Applied in order, the replies and events end on the third snapshot and what followed it.
    expect(await framesToPong(client)).toEqual(['reply 1 []', 'reply 2 []', 'event doc:1 acquired', 'reply 3 [doc:1]', 'event doc:1 released', 'pong']);
    expect([first.stopped(), second.stopped(), third.stopped()]).toEqual([true, true, false]);
  });

  it('answers a watch sent after an unwatch after the watch that unwatch stopped', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const second = await sendHeld(2, 'doc:');
    expect(await client.request({ op: 'unwatch', id: 3, prefix: 'doc:' })).toMatchObject({ ok: true });
    const fourth = await sendHeld(4, 'doc:');
    fourth.answer([held]);
    second.answer();
    expect(await framesToPong(client)).toEqual(['reply 2 []', 'reply 4 [doc:1]', 'pong']);
    expect([stub.sinks.length, second.stopped(), fourth.stopped()]).toEqual([0, true, false]);
    fourth.sink(released);
    expect(await client.next()).toEqual({ type: 'event', ...released });
  });

  it('sends the error of a failed watch before the reply of the later watch that replaces it in its place', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const second = await sendHeld(2, 'doc:');
    const third = await sendHeld(3, 'doc:');
    first?.(acquired);
    third.answer([held]);
    second.fail();
    expect(await framesToPong(client)).toEqual(['reply 2 [false]', 'event doc:1 acquired', 'reply 3 [doc:1]', 'pong']);
    // The third watch replaced the first: its stream alone goes on.
    expect([stub.sinks.length, third.stopped()]).toEqual([0, false]);
  });

  it('stops the streams of a watch waiting for an earlier one and of that one when the session ends meanwhile', async () => {
    const { stub, client, sendHeld } = await start();
    const closed = deferred<void>();
    stub.behaviour.closeSession = async () => closed.resolve();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const second = await sendHeld(2, 'doc:');
    const third = await sendHeld(3, 'doc:');
    third.answer([held]);
    client.ws.terminate();
    await within(closed.promise, 'the session to end');
    await within(third.whenStopped, 'the third stream to stop');
    second.answer();
    await within(second.whenStopped, 'the second stream to stop');
    expect(stub.sinks).toEqual([]);
  });
});

describe('an unwatch while an overlapping watch takes its snapshot', () => {
  for (const [unwatched, pendingPrefix] of [['', 'k'], ['k', '']] as const) {
    it(`of "${unwatched}" sends no event held for a pending watch of "${pendingPrefix}" after its reply once that watch fails, and a ping waiting for the event answers`, async () => {
      const { stub, client, sendHeld } = await start();
      await client.request({ op: 'watch', id: 1, prefix: unwatched });
      const [first] = stub.sinks;
      const pending = await sendHeld(2, pendingPrefix);
      // Held: the pending watch started before the event and must see it after its snapshot.
      first?.(event('k1', 1));
      client.send({ op: 'unwatch', id: 3, prefix: unwatched });
      expect(await framesTo(client, 3)).toEqual(['reply 3 [true]']);
      client.send({ op: 'ping', id: 4 });
      // A round trip after the ping: it waits for the held event.
      client.send({ op: 'status', id: 5, key: 'x' });
      expect(await framesTo(client, 5)).toEqual(['reply 5 [true]']);
      pending.fail();
      expect(await framesTo(client, 4)).toEqual(['reply 2 [false]', 'reply 4 [true]']);
    });
  }

  it('of a prefix watched again sends no event the replaced stream delivered after its reply once another pending watch fails', async () => {
    const { stub, client, sendHeld } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const pendingAgain = await sendHeld(2, 'doc:');
    const pendingInner = await sendHeld(3, 'doc:1');
    first?.(event('doc:1', 1));
    // The watch again replaces the first stream; the event still waits for the inner watch.
    pendingAgain.answer();
    expect(await framesTo(client, 2)).toEqual(['reply 2 []']);
    client.send({ op: 'unwatch', id: 4, prefix: 'doc:' });
    expect(await framesTo(client, 4)).toEqual(['reply 4 [true]']);
    pendingInner.fail();
    client.send({ op: 'ping', id: 5 });
    expect(await framesTo(client, 5)).toEqual(['reply 3 [false]', 'reply 5 [true]']);
  });
});
