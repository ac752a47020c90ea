import { afterEach, describe, expect, it } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockEvent, WatchHandle } from '../src/store.js';
import { createStubStore, RawClient } from './server-harness.js';

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
  answer(): void;
  fail(): void;
}

/**
 * A server over a stub store and a client of it. `holdWatch()` makes the
 * store's next watch call wait for the test; the others answer at once.
 */
async function start() {
  const stub = createStubStore();
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: stub.store });
  servers.push(server);
  const { client } = await RawClient.connect(server.url);
  clients.push(client);
  const answerAtOnce = stub.behaviour.watch;
  const holdWatch = (): Promise<HeldWatch> =>
    new Promise((caught) => {
      stub.behaviour.watch = (_prefix, _limit, _viewer, sink) => {
        stub.behaviour.watch = answerAtOnce;
        const handle = deferred<WatchHandle>();
        let stopped = false;
        caught({
          sink,
          stopped: () => stopped,
          answer: () => handle.resolve({ snapshot: { locks: [], truncated: false }, stop: () => (stopped = true) }),
          fail: () => handle.reject(new Error('the watch read failed')),
        });
        return handle.promise;
      };
    });
  return { stub, client, holdWatch };
}

describe('unwatch while a watch of the same prefix again takes its snapshot', () => {
  it('stops the stream being replaced: its events after the unwatch reply are not sent', async () => {
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const again = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pending = await again;
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
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const [first] = stub.sinks;
    const second = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pendingSecond = await second;
    const third = holdWatch();
    client.send({ op: 'watch', id: 3, prefix: 'doc:' });
    const pendingThird = await third;
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
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const second = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pendingSecond = await second;
    const third = holdWatch();
    client.send({ op: 'watch', id: 3, prefix: 'doc:' });
    const pendingThird = await third;
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
      const { stub, client, holdWatch } = await start();
      await client.request({ op: 'watch', id: 1, prefix: firstPrefix });
      const [first] = stub.sinks;
      const again = holdWatch();
      client.send({ op: 'watch', id: 2, prefix: 'doc:' });
      const pending = await again;
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
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [first] = stub.sinks;
    const again = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pending = await again;
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
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const second = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pendingSecond = await second;
    const acquired = event('doc:1', 1);
    wide?.(acquired);
    pendingSecond.sink(acquired);
    const third = holdWatch();
    client.send({ op: 'watch', id: 3, prefix: 'doc:' });
    const pendingThird = await third;
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
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const narrow = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pending = await narrow;
    wide?.(acquired);
    client.send({ op: 'ping', id: 'p' });
    // A round trip after the ping: an unwaiting ping would be answered by now.
    expect(await client.request({ op: 'status', id: 3, key: 'x' })).toMatchObject({ ok: true });
    pending.answer();
    await client.reply('p');
    expect(client.inbox.map((f) => `${String(f.type)} ${String(f.id ?? f.key)}`)).toEqual(['event doc:1', 'reply 2']);
  });

  it('waits for no watch started after the events it waits for', async () => {
    const { stub, client, holdWatch } = await start();
    await client.request({ op: 'watch', id: 1, prefix: '' });
    const [wide] = stub.sinks;
    const narrow = holdWatch();
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    const pendingNarrow = await narrow;
    wide?.(acquired);
    client.send({ op: 'ping', id: 'p' });
    const later = holdWatch();
    client.send({ op: 'watch', id: 3, prefix: 'doc:1' });
    const pendingLater = await later;
    pendingNarrow.answer();
    // The later watch reads its snapshot after the acquire: the event goes before its reply, and the ping's.
    expect(await client.next()).toEqual({ type: 'event', ...acquired });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 'p', ok: true });
    pendingLater.answer();
    expect(await client.next()).toMatchObject({ type: 'reply', id: 3, ok: true });
  });
});
