import { afterEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient, LockEvent, TransportFactory } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { nextEvent, recordingTransport, startHarness, within, type Harness } from './fixtures.js';

type Frame = Record<string, unknown>;

let h: Harness | undefined;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await h?.close();
  await proxy?.close();
  h = undefined;
  proxy = undefined;
});

/**
 * A transport that logs the frames a client sends and receives, and lets a
 * test await a state of that log (bounded).
 */
function frameLog() {
  const received: Frame[] = [];
  /** Frames sent, each with how many frames had been received when it was sent. */
  const sent: { frame: Frame; after: number }[] = [];
  const checks = new Set<() => void>();
  const notify = () => {
    for (const check of [...checks]) check();
  };
  const recording = recordingTransport((frame) => {
    received.push(frame);
    notify();
  });
  const transport: TransportFactory = (url, handlers) => {
    const socket = recording.transport(url, handlers);
    return {
      send(text) {
        socket.send(text);
        const frame = recording.sent.at(-1);
        if (frame) sent.push({ frame, after: received.length });
        notify();
      },
      close: (code, reason) => socket.close(code, reason),
    };
  };
  const until = (what: string, test: () => boolean) =>
    within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!test()) return;
          checks.delete(check);
          resolve();
        };
        checks.add(check);
        check();
      }),
      2000,
      what,
    );
  /** The frames of `op` sent for `field: value` (e.g. `status` of a key, `watch` of a prefix). */
  const sentOf = (op: string, field: 'key' | 'prefix', value: string) =>
    sent.filter(({ frame }) => frame.op === op && frame[field] === value).map(({ frame }) => frame);
  /** Resolves once the latest `watch` of `prefix` the client sent was answered: with that reply. */
  const watchAnswered = async (prefix: string): Promise<Frame> => {
    let reply: Frame | undefined;
    await until(`the answer to the watch of ${prefix}`, () => {
      const ask = sent.findLast(({ frame }) => frame.op === 'watch' && frame.prefix === prefix);
      reply = ask && received.slice(ask.after).find((frame) => frame.type === 'reply' && frame.id === ask.frame.id);
      return reply !== undefined;
    });
    return reply ?? {};
  };
  return { transport, sentOf, until, watchAnswered };
}

/** Starts a request on `client` that holds `name` until `release` resolves; resolves once granted. */
async function holding(client: LockClient, name: string, release: Promise<unknown>, mode: 'shared' | 'exclusive') {
  let granted!: (lock: Lock | null) => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  const done = client.locks.request(name, { mode }, (l) => {
    granted(l);
    return release;
  });
  return { lock: await within(lock), done: done.catch((error: unknown) => error) };
}

/** Watches `prefix` from `observer` and collects its events; `saw(...)` waits (bounded) for one of them. */
async function recorder(observer: LockClient, prefix: string) {
  const events: LockEvent[] = [];
  let onEvent: (() => void) | undefined;
  const watch = await observer.watch(prefix, (event) => {
    events.push(event);
    onEvent?.();
  });
  const saw = (key: string, type: string, session: string) =>
    within(
      new Promise<void>((resolve) => {
        onEvent = () => {
          if (events.some((e) => e.key === key && e.event === type && e.session === session)) resolve();
        };
        onEvent();
      }),
      2000,
      `a ${type} event of ${session} for ${key}`,
    );
  return { events, saw, watch };
}

/**
 * Alice holds `name` shared; bob's exclusive request waits in the server
 * queue (abort it with `bobController`); alice's second shared request waits
 * behind it. Resolves once alice's watch of the name was answered.
 */
async function readerBehindWriter(
  alice: LockClient,
  bob: LockClient,
  observer: LockClient,
  log: ReturnType<typeof frameLog>,
  name: string,
) {
  const first = await holding(alice, name, new Promise(() => undefined), 'shared');
  const seen = await recorder(observer, name);
  const bobController = new AbortController();
  const bobWrite = bob.locks.request(name, { signal: bobController.signal }, () => 'bob').catch((e: unknown) => e);
  await seen.saw(name, 'queued', bob.session);
  let granted = false;
  const second = alice.locks.request(name, { mode: 'shared' }, (lock) => {
    granted = true;
    return lock?.token;
  });
  const watchReply = await log.watchAnswered(name);
  return { first, seen, bobController, bobWrite, second, watchReply, granted: () => granted };
}

describe('client.locks: a shared request behind another client queued writer is told, not polling', () => {
  it('is granted once the writer cancels, after the status that found it queued and one on its leaving, and the name is unwatched', async () => {
    h = await startHarness();
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    const scene = await readerBehindWriter(alice, bob, carol, log, 'w1');
    expect(scene.watchReply).toMatchObject({ ok: true });
    expect(scene.granted()).toBe(false);

    const reason = new Error('bob gave up');
    scene.bobController.abort(reason);
    expect(await within(scene.bobWrite)).toBe(reason);
    expect(await within(scene.second)).toBe(scene.first.lock?.token);
    // The status that found bob queued; the writer's leaving came as an event, and one status confirmed it.
    expect(log.sentOf('status', 'key', 'w1')).toHaveLength(2);
    expect(log.sentOf('unwatch', 'prefix', 'w1')).toHaveLength(1);
  });

  it('is granted once the writer disconnects, with one status on its leaving and no polling', async () => {
    h = await startHarness();
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    const scene = await readerBehindWriter(alice, bob, carol, log, 'w2');
    await bob.close();
    expect(await within(scene.second)).toBe(scene.first.lock?.token);
    expect(log.sentOf('status', 'key', 'w2')).toHaveLength(2);
  });

  it('is not granted by an event of another key the name starts', async () => {
    h = await startHarness();
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    const scene = await readerBehindWriter(alice, bob, carol, log, 'w3');
    // Under alice's watch of `w3`, with nobody waiting: not the name's queue.
    await holding(carol, 'w30', new Promise(() => undefined), 'exclusive');
    await alice.ping();
    const { held } = await alice.locks.query();
    expect(held.filter((lock) => lock.name === 'w3' && lock.clientId === alice.session)).toHaveLength(1);
    expect(scene.granted()).toBe(false);
    scene.bobController.abort(new Error('bob gave up'));
    expect(await within(scene.second)).toBe(scene.first.lock?.token);
  });

  it('leaves the server no watch of the session once granted', async () => {
    // One watch per session: the application's next watch is accepted only if the client's own is gone.
    h = await startHarness({ limits: { maxWatchesPerSession: 1 } });
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    const scene = await readerBehindWriter(alice, bob, carol, log, 'w4');
    expect(scene.watchReply).toMatchObject({ ok: true });
    await expect(alice.watch('other:', () => undefined)).rejects.toMatchObject({ code: 'bad_request' });

    scene.bobController.abort(new Error('bob gave up'));
    await within(scene.second);
    const watch = await alice.watch('other:', () => undefined);
    expect(watch.signal.aborted).toBe(false);
  });

  it('learns after a resume that the writer left while the connection was down', async () => {
    h = await startHarness({ sessionGrace: 30_000 });
    proxy = await startTcpProxy(h.server.port);
    const log = frameLog();
    const alice = await h.connectTo(proxy.url(h.server.url), {
      transport: log.transport,
      reconnect: { initialDelay: 1, jitter: 0 },
    });
    const bob = await h.connect();
    const carol = await h.connect();
    const scene = await readerBehindWriter(alice, bob, carol, log, 'w5');
    proxy.block();
    const down = nextEvent(alice, 'disconnect');
    proxy.cut();
    await down;
    scene.bobController.abort(new Error('bob gave up'));
    await scene.seen.saw('w5', 'dequeued', bob.session);
    const reconnected = nextEvent(alice, 'reconnect');
    proxy.unblock();
    expect(await reconnected).toMatchObject({ resumed: true });
    expect(await within(scene.second)).toBe(scene.first.lock?.token);
    expect(log.sentOf('status', 'key', 'w5')).toHaveLength(2);
  });
});

describe('client.locks: a shared request keeps its place among other clients\' queued writers (W3C order)', () => {
  it('is granted when the writer it waited behind leaves, though a writer made after it queued meanwhile', async () => {
    h = await startHarness();
    const alice = await h.connect();
    const bob = await h.connect();
    const dave = await h.connect();
    const carol = await h.connect();
    const name = 'fifo1';
    // Alice reads; her callback holds until her nested read is granted (a nested shared request).
    const first = await holding(alice, name, new Promise(() => undefined), 'shared');
    const seen = await recorder(carol, name);
    const bobController = new AbortController();
    const bobWrite = bob.locks.request(name, { signal: bobController.signal }, () => 'bob').catch((e: unknown) => e);
    await seen.saw(name, 'queued', bob.session);
    // Alice's second read is made now: after bob's write, before dave's.
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    // Alice's status is answered and her watch is in place before dave's write is made.
    await alice.ping();
    await alice.ping();
    const daveWrite = dave.locks.request(name, () => 'dave').catch((e: unknown) => e);
    await seen.saw(name, 'queued', dave.session);
    bobController.abort(new Error('bob gave up'));
    expect(await within(bobWrite)).toBeInstanceOf(Error);
    // In a browser the queue is [bob (X), alice's second (S), dave (X)]: bob leaves, alice's second read is
    // grantable along with her first.
    expect(await within(second.catch((e: unknown) => e), 2000, "alice's second read")).toBe(first.lock?.token);
    const status = await carol.status(name);
    expect(status.queue.map((waiter) => waiter.session)).toEqual([dave.session]);
    void daveWrite;
  });

  it('grants every read made before the later writer once the writer ahead leaves, and keeps a read made after it waiting', async () => {
    h = await startHarness();
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const dave = await h.connect();
    const carol = await h.connect();
    const name = 'fifo2';
    const first = await holding(alice, name, new Promise(() => undefined), 'shared');
    const seen = await recorder(carol, name);
    const bobController = new AbortController();
    void bob.locks.request(name, { signal: bobController.signal }, () => 'bob').catch(() => undefined);
    await seen.saw(name, 'queued', bob.session);
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await log.watchAnswered(name);
    // Made while the second waits behind bob: it asks which requests are ahead of it before dave's write is made.
    const third = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await log.until('the status asked for the third read', () => log.sentOf('status', 'key', name).length === 2);
    await alice.ping();
    void dave.locks.request(name, () => 'dave').catch(() => undefined);
    await seen.saw(name, 'queued', dave.session);
    let fourthGranted = false;
    const fourth = alice.locks.request(name, { mode: 'shared' }, () => {
      fourthGranted = true;
    });
    fourth.catch(() => undefined);
    await log.until('the status asked for the fourth read', () => log.sentOf('status', 'key', name).length === 3);
    await alice.ping();
    bobController.abort(new Error('bob gave up'));
    expect(await within(second)).toBe(first.lock?.token);
    expect(await within(third)).toBe(first.lock?.token);
    await alice.ping();
    await alice.ping();
    // The fourth read was made after dave's write queued: in a browser it waits behind it.
    expect(fourthGranted).toBe(false);
    expect((await carol.status(name)).queue.map((waiter) => waiter.session)).toEqual([dave.session]);
  });
});

describe('client.locks: a shared request behind another client queued writer, the watch refused', () => {
  it('asks status again and is granted once the writer left, and the application watch goes on', async () => {
    h = await startHarness({ limits: { maxWatchesPerSession: 1 } });
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    // The application's watch takes the session's one watch.
    const own = await recorder(alice, 'app:');
    const scene = await readerBehindWriter(alice, bob, carol, log, 'f1');
    expect(scene.watchReply).toMatchObject({ ok: false, error: { code: 'bad_request' } });

    scene.bobController.abort(new Error('bob gave up'));
    expect(await within(scene.second, 4000, 'the shared request after its re-check')).toBe(scene.first.lock?.token);
    expect(log.sentOf('status', 'key', 'f1').length).toBeGreaterThan(1);
    await holding(bob, 'app:1', new Promise(() => undefined), 'exclusive');
    await own.saw('app:1', 'acquired', bob.session);
    expect(own.watch.signal.aborted).toBe(false);
  });
});

describe('client.locks: the client watch and the application watches of the same client', () => {
  it('application watches of an overlapping and of the same prefix see exactly their own events, and go on after', async () => {
    h = await startHarness();
    const log = frameLog();
    const alice = await h.connect({ transport: log.transport });
    const bob = await h.connect();
    const carol = await h.connect();
    const wide = await recorder(alice, 'ov:');
    const same = await recorder(alice, 'ov:1');
    const reference = await recorder(carol, 'ov:');
    const scene = await readerBehindWriter(alice, bob, carol, log, 'ov:1');
    expect(scene.watchReply).toMatchObject({ ok: true });
    await holding(carol, 'ov:10', new Promise(() => undefined), 'exclusive');
    scene.bobController.abort(new Error('bob gave up'));
    await within(scene.second);
    // The client's watch is gone; the prefix stays watched for the application: no unwatch of it.
    expect(log.sentOf('unwatch', 'prefix', 'ov:1')).toHaveLength(0);
    await holding(bob, 'ov:2', new Promise(() => undefined), 'exclusive');
    await holding(bob, 'ov:1x', new Promise(() => undefined), 'exclusive');
    await Promise.all([
      wide.saw('ov:2', 'acquired', bob.session),
      same.saw('ov:1x', 'acquired', bob.session),
      reference.saw('ov:1x', 'acquired', bob.session),
    ]);
    expect(wide.events).toEqual(reference.events);
    expect(same.events).toEqual(reference.events.filter((event) => event.key.startsWith('ov:1')));
    expect(same.events.map((event) => `${event.event} ${event.key}`)).toContain('dequeued ov:1');
  });
});
