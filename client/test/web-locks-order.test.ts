import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let alice: LockClient;
let bob: LockClient;

beforeEach(async () => {
  h = await startHarness();
  alice = await h.connect();
  bob = await h.connect();
});
afterEach(async () => {
  await h.close();
});

/** Starts a request on `client` that holds `name` until `release` resolves; resolves once granted. */
async function holding(
  client: LockClient,
  name: string,
  release: Promise<unknown>,
  options: { mode?: 'shared' | 'exclusive'; steal?: boolean } = {},
) {
  let granted!: (lock: Lock | null) => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  const done = client.locks.request(name, options, (l) => {
    granted(l);
    return release;
  });
  return { lock: await within(lock), done: done.catch((error: unknown) => error) };
}

/** A promise to hold a lock with, and the function that ends it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * Watches `name` from `observer`; the function it resolves with waits (bounded)
 * for the next `type` event of `session` on it. Call before what causes it.
 */
async function whenEvent(
  observer: LockClient,
  name: string,
  session: string,
  type: string,
): Promise<() => Promise<void>> {
  let happened!: () => void;
  const seen = new Promise<void>((resolve) => (happened = resolve));
  const watch = await observer.watch(name, (event) => {
    if (event.key === name && event.event === type && event.session === session) happened();
  });
  return () => within(seen, 2000, `a ${type} event of ${session} for ${name}`).finally(() => watch.close());
}

/** {@link whenEvent} for the `queued` event: a request of `session` joined the server queue. */
function whenQueued(observer: LockClient, name: string, session: string): Promise<() => Promise<void>> {
  return whenEvent(observer, name, session, 'queued');
}

describe('client.locks: a shared request and another client queued writer', () => {
  it('an ifAvailable shared request gets null while another client waits exclusive, though this client holds the name shared', async () => {
    await holding(alice, 's1', new Promise(() => undefined), { mode: 'shared' });
    const bobQueued = await whenQueued(bob, 's1', bob.session);
    void bob.locks.request('s1', () => 'bob').catch(() => undefined);
    await bobQueued();
    const got = await within(alice.locks.request('s1', { mode: 'shared', ifAvailable: true }, (lock) => lock));
    expect(got).toBeNull();
  });

  it('an ifAvailable shared request shares this client shared hold while the server queue is empty', async () => {
    const first = await holding(alice, 's2', new Promise(() => undefined), { mode: 'shared' });
    const got = await within(alice.locks.request('s2', { mode: 'shared', ifAvailable: true }, (lock) => lock));
    expect(got).toMatchObject({ name: 's2', mode: 'shared', token: first.lock?.token });
  });

  it('a shared request waits behind another client queued exclusive request instead of sharing this client shared hold', async () => {
    const granted: string[] = [];
    const reader = gate();
    await holding(alice, 's3', reader.promise, { mode: 'shared' });
    const writer = gate();
    const bobQueued = await whenQueued(bob, 's3', bob.session);
    const bobDone = bob.locks.request('s3', async () => {
      granted.push('bob');
      await writer.promise;
    });
    await bobQueued();
    const second = alice.locks.request('s3', { mode: 'shared' }, () => void granted.push('alice'));
    // Replies come in order: once this status is answered, the client has learned of bob's queued request.
    await alice.status('s3');
    expect(granted).toEqual([]);

    // Alice's first reader ends: bob is granted, and alice's second request waits behind him on the server.
    const aliceQueued = await whenQueued(bob, 's3', alice.session);
    reader.open();
    await aliceQueued();
    expect(granted).toEqual(['bob']);
    expect((await alice.status('s3')).queue.map((entry) => entry.session)).toEqual([alice.session]);

    writer.open();
    await within(bobDone);
    await within(second);
    expect(granted).toEqual(['bob', 'alice']);
  });

  it('requests of this client keep their order while a shared request waits behind another client writer', async () => {
    const granted: string[] = [];
    const reader = gate();
    await holding(alice, 's4', reader.promise, { mode: 'shared' });
    const bobQueued = await whenQueued(bob, 's4', bob.session);
    const bobDone = bob.locks.request('s4', () => void granted.push('bob'));
    await bobQueued();
    const own = [
      alice.locks.request('s4', { mode: 'shared' }, () => void granted.push('shared 1')),
      alice.locks.request('s4', () => void granted.push('exclusive')),
      alice.locks.request('s4', { mode: 'shared' }, () => void granted.push('shared 2')),
    ];
    await alice.status('s4');
    expect(granted).toEqual([]);
    reader.open();
    await within(Promise.all([bobDone, ...own]));
    expect(granted).toEqual(['bob', 'shared 1', 'exclusive', 'shared 2']);
  });

  it('a shared request waiting behind another client writer rejects with signal.reason when aborted, and the writer is granted once the reader ends', async () => {
    const reader = gate();
    await holding(alice, 's5', reader.promise, { mode: 'shared' });
    const bobQueued = await whenQueued(bob, 's5', bob.session);
    const bobDone = bob.locks.request('s5', () => 'bob');
    await bobQueued();
    const controller = new AbortController();
    let called = false;
    const waiting = alice.locks
      .request('s5', { mode: 'shared', signal: controller.signal }, () => void (called = true))
      .catch((error: unknown) => error);
    await alice.status('s5');
    const reason = new Error('gave up');
    controller.abort(reason);
    expect(await within(waiting)).toBe(reason);
    reader.open();
    expect(await within(bobDone)).toBe('bob');
    expect(called).toBe(false);
    expect(await alice.locks.query()).toEqual({ held: [], pending: [] });
  });

  it('an ifAvailable shared request made right after an ordinary shared request shares this client shared hold too', async () => {
    const first = await holding(alice, 's7', new Promise(() => undefined), { mode: 'shared' });
    // The server queue is empty: in a browser both requests are granted at once.
    const ordinary = alice.locks.request('s7', { mode: 'shared' }, (lock) => lock?.token);
    const tryNow = alice.locks.request('s7', { mode: 'shared', ifAvailable: true }, (lock) => lock?.token ?? null);
    expect(await within(ordinary)).toBe(first.lock?.token);
    expect(await within(tryNow)).toBe(first.lock?.token);
  });

  it('an ifAvailable shared request made right after two ordinary shared requests shares this client shared hold too', async () => {
    const first = await holding(alice, 's11', new Promise(() => undefined), { mode: 'shared' });
    const ordinary = [1, 2].map(() => alice.locks.request('s11', { mode: 'shared' }, (lock) => lock?.token));
    const tryNow = alice.locks.request('s11', { mode: 'shared', ifAvailable: true }, (lock) => lock?.token ?? null);
    expect(await within(Promise.all(ordinary))).toEqual([first.lock?.token, first.lock?.token]);
    expect(await within(tryNow)).toBe(first.lock?.token);
  });

  it('an ifAvailable shared request made right after an ordinary shared request gets null while another client waits exclusive', async () => {
    await holding(alice, 's8', new Promise(() => undefined), { mode: 'shared' });
    const bobQueued = await whenQueued(bob, 's8', bob.session);
    void bob.locks.request('s8', () => 'bob').catch(() => undefined);
    await bobQueued();
    let granted = false;
    void alice.locks.request('s8', { mode: 'shared' }, () => void (granted = true)).catch(() => undefined);
    const got = await within(alice.locks.request('s8', { mode: 'shared', ifAvailable: true }, (lock) => lock));
    expect(got).toBeNull();
    expect(granted).toBe(false);
  });

  it('a shared request waiting behind another client writer is granted once that writer leaves the server queue', async () => {
    // Alice keeps reading, so only the writer's leaving can let her second shared request in.
    const first = await holding(alice, 's9', new Promise(() => undefined), { mode: 'shared' });
    const bobQueued = await whenQueued(alice, 's9', bob.session);
    const controller = new AbortController();
    const bobWrite = bob.locks.request('s9', { signal: controller.signal }, () => 'bob').catch((e: unknown) => e);
    await bobQueued();
    let granted = false;
    const second = alice.locks.request('s9', { mode: 'shared' }, (lock) => {
      granted = true;
      return lock?.token;
    });
    await alice.status('s9');
    expect(granted).toBe(false);

    const bobGone = await whenEvent(alice, 's9', bob.session, 'dequeued');
    const reason = new Error('bob gave up');
    controller.abort(reason);
    await bobGone();
    expect(await within(bobWrite)).toBe(reason);
    expect(await within(second, 4000, 'the second shared request after the writer left')).toBe(first.lock?.token);
  });

  it('a holder waiting for a nested shared request of this client is not stuck once another client writer leaves the server queue', async () => {
    const bobQueued = await whenQueued(alice, 's10', bob.session);
    const controller = new AbortController();
    let nestedStarted!: () => void;
    const nestedMade = new Promise<void>((resolve) => (nestedStarted = resolve));
    const outer = alice.locks.request('s10', { mode: 'shared' }, async (lock) => {
      await bobQueued();
      const nested = alice.locks.request('s10', { mode: 'shared' }, (inner) => inner?.token);
      nestedStarted();
      return [lock?.token, await nested];
    });
    void bob.locks.request('s10', { signal: controller.signal }, () => 'bob').catch(() => undefined);
    await within(nestedMade);
    await alice.status('s10');
    const bobGone = await whenEvent(alice, 's10', bob.session, 'dequeued');
    controller.abort(new Error('bob gave up'));
    await bobGone();
    const [token, nestedToken] = await within(outer, 4000, 'the outer read once its nested read was granted');
    expect(nestedToken).toBe(token);
  });

  it('close() rejects a shared request waiting behind another client writer, and the writer is granted', async () => {
    await holding(alice, 's12', new Promise(() => undefined), { mode: 'shared' });
    const bobQueued = await whenQueued(bob, 's12', bob.session);
    const bobDone = bob.locks.request('s12', () => 'bob');
    await bobQueued();
    const waiting = alice.locks.request('s12', { mode: 'shared' }, () => 'alice').catch((error: unknown) => error);
    await alice.status('s12');
    await alice.close();
    expect(await within(waiting)).toMatchObject({ name: 'LockError' });
    expect(await within(bobDone)).toBe('bob');
  });

  it('a shared request made while the server queue is empty shares this client shared hold at once', async () => {
    const reader = gate();
    const first = await holding(alice, 's6', reader.promise, { mode: 'shared' });
    const token = await within(alice.locks.request('s6', { mode: 'shared' }, (lock) => lock?.token));
    expect(token).toBe(first.lock?.token);
    reader.open();
    await within(first.done);
    expect((await bob.status('s6')).locked).toBe(false);
  });
});

describe('client.locks: an ifAvailable shared request among this client requests', () => {
  it('an ifAvailable shared request is not turned to null by an exclusive request this client made after it', async () => {
    const first = await holding(alice, 'ia1', new Promise(() => undefined), { mode: 'shared' });
    // The server queue is empty: in a browser the ordinary and the ifAvailable shared requests are both granted at once.
    const ordinary = alice.locks.request('ia1', { mode: 'shared' }, (lock) => lock?.token);
    const tryNow = alice.locks.request('ia1', { mode: 'shared', ifAvailable: true }, (lock) => lock?.token ?? null);
    // Made after the ifAvailable request: it must not change that request's answer.
    void alice.locks.request('ia1', () => 'later exclusive').catch(() => undefined);
    expect(await within(ordinary)).toBe(first.lock?.token);
    expect(await within(tryNow)).toBe(first.lock?.token);
  });

  it('an ifAvailable shared request waiting for an acquire in flight is not turned to null by an exclusive request made after it', async () => {
    const ordinary = alice.locks.request('ia2', { mode: 'shared' }, (lock) => lock?.token ?? null);
    const tryNow = alice.locks.request('ia2', { mode: 'shared', ifAvailable: true }, (lock) => lock?.token ?? null);
    void alice.locks.request('ia2', () => 'later exclusive').catch(() => undefined);
    const token = await within(ordinary);
    expect(token).not.toBeNull();
    expect(await within(tryNow)).toBe(token);
  });

  it('a waiting ifAvailable shared request runs its callback before a shared request made after it', async () => {
    await holding(alice, 'ia3', new Promise(() => undefined), { mode: 'shared' });
    const order: string[] = [];
    const a = alice.locks.request('ia3', { mode: 'shared' }, () => void order.push('ordinary 1'));
    const b = alice.locks.request('ia3', { mode: 'shared', ifAvailable: true }, (l) => void order.push(l ? 'ifAvailable' : 'null'));
    const c = alice.locks.request('ia3', { mode: 'shared' }, () => void order.push('ordinary 2'));
    await within(Promise.all([a, b, c]));
    expect(order).toEqual(['ordinary 1', 'ifAvailable', 'ordinary 2']);
  });
});

describe('client.locks: a steal and a shared request being decided', () => {
  it('a shared request made before a steal, grantable at once, is robbed by the steal rather than granted after it', async () => {
    await holding(alice, 'st1', new Promise(() => undefined), { mode: 'shared' });
    let stealDone = false;
    const shared = alice.locks
      .request('st1', { mode: 'shared' }, () => (stealDone ? 'granted after the steal' : 'granted before the steal'))
      .catch((error: unknown) => error);
    // Made after the shared request, in the same task.
    const steal = alice.locks.request('st1', { steal: true }, () => 'stolen');
    expect(await within(steal)).toBe('stolen');
    stealDone = true;
    expect(await within(shared)).toMatchObject({ name: 'AbortError' });
  });

  it('a shared request made after a steal is granted once the steal is done, and an ifAvailable one gets null', async () => {
    await holding(alice, 'st2', new Promise(() => undefined), { mode: 'shared' });
    const order: string[] = [];
    const before = alice.locks.request('st2', { mode: 'shared' }, () => void order.push('before')).catch((e: unknown) => e);
    const steal = alice.locks.request('st2', { steal: true }, (lock) => {
      order.push('steal');
      return lock?.token;
    });
    const after = alice.locks.request('st2', { mode: 'shared' }, (lock) => {
      order.push('after');
      return lock?.token;
    });
    const tryNow = alice.locks.request('st2', { mode: 'shared', ifAvailable: true }, (lock) => lock);
    expect(await within(tryNow)).toBeNull();
    const stolen = await within(steal);
    expect(await within(before)).toMatchObject({ name: 'AbortError' });
    expect(await within(after)).toBeGreaterThan(stolen ?? Infinity);
    // The robbed request may lose the lock before its callback runs, and then never calls it.
    expect(order.filter((entry) => entry !== 'before')).toEqual(['steal', 'after']);
  });
});

describe('client.locks answering an ifAvailable request made after a steal', () => {
  it('calls back the steal first, then the ifAvailable request with null, as a browser answers requests in order', async () => {
    await holding(bob, 'st3', new Promise(() => undefined));
    const order: string[] = [];
    await within(
      Promise.all([
        alice.locks.request('st3', { steal: true }, () => void order.push('steal')),
        alice.locks.request('st3', { ifAvailable: true }, (lock) => void order.push(`ifAvailable ${lock ? 'lock' : 'null'}`)),
      ]),
    );
    expect(order).toEqual(['steal', 'ifAvailable null']);
  });

  it('answers null after the steal also when the steal failed', async () => {
    const order: string[] = [];
    // A steal the server refuses (the name is over its maxKeyLength) fails; the ifAvailable request made after it
    // was not grantable when made, and is answered after the steal's failure.
    const longName = 'n'.repeat(300);
    const steal = alice.locks.request(longName, { steal: true }, () => void order.push('steal')).catch((error: unknown) => {
      order.push('steal failed');
      return error;
    });
    const tryNow = alice.locks.request(longName, { ifAvailable: true }, (lock) => void order.push(`ifAvailable ${lock ? 'lock' : 'null'}`));
    await within(Promise.all([steal, tryNow]));
    expect(order).toEqual(['steal failed', 'ifAvailable null']);
  });
});

describe('client.locks when the server refuses the status a shared request asks', () => {
  // Two frames per session, then one more per ms of the manual clock: a third frame at once is refused.
  const limits = { rateLimit: 1000, rateBurst: 2 };

  it('an ifAvailable shared request rejects with the refusal', async () => {
    const limited = await startHarness({ limits });
    try {
      const carol = await limited.connect();
      await holding(carol, 'r1', new Promise(() => undefined), { mode: 'shared' });
      await carol.ping();
      const attempt = carol.locks.request('r1', { mode: 'shared', ifAvailable: true }, (lock) => lock);
      await expect(within(attempt)).rejects.toMatchObject({ name: 'LockError', code: 'rate_limited' });
    } finally {
      await limited.close();
    }
  });

  it('a shared request whose status was refused does not share the hold then, and shares it once the server answers its queue is empty', async () => {
    const limited = await startHarness({ limits });
    try {
      let refused!: () => void;
      const isRefused = new Promise<void>((resolve) => (refused = resolve));
      const { transport } = recordingTransport((frame) => {
        const error = frame.error as { code?: string } | undefined;
        if (frame.type === 'reply' && error?.code === 'rate_limited') refused();
      });
      const carol = await limited.connect({ transport });
      const first = await holding(carol, 'r2', new Promise(() => undefined), { mode: 'shared' });
      await carol.ping();
      let granted = false;
      const second = carol.locks.request('r2', { mode: 'shared' }, (lock) => {
        granted = true;
        return lock?.token;
      });
      await within(isRefused);
      // Refused too (the manual clock stands still, and so does the rate budget); answered after the refused
      // status, so the client has handled that refusal by now.
      await expect(carol.ping()).rejects.toMatchObject({ code: 'rate_limited' });
      expect(granted).toBe(false);
      // Room for the status the request asks again: the server queue is empty, so it shares the hold.
      limited.clock.advance(1000);
      expect(await within(second, 4000, 'the shared request once its status was answered')).toBe(first.lock?.token);
    } finally {
      await limited.close();
    }
  });
});

describe('client.locks.query() order', () => {
  it('lists held locks in the order they were granted, not in key order', async () => {
    await holding(alice, 'q-z', new Promise(() => undefined));
    await holding(bob, 'q-m', new Promise(() => undefined));
    await holding(alice, 'q-a', new Promise(() => undefined));
    const { held } = await alice.locks.query();
    expect(held.map((lock) => lock.name)).toEqual(['q-z', 'q-m', 'q-a']);
    expect(held.map((lock) => lock.clientId)).toEqual([alice.session, bob.session, alice.session]);
  });

  it('lists pending requests in the order they were made, not in key order', async () => {
    const carol = await h.connect();
    await holding(bob, 'p-z', new Promise(() => undefined));
    await holding(bob, 'p-a', new Promise(() => undefined));
    const queue = async (client: LockClient, name: string) => {
      const queued = await whenQueued(bob, name, client.session);
      void client.locks.request(name, () => undefined).catch(() => undefined);
      await queued();
      // Each request is made a millisecond after the one before it.
      h.clock.advance(1);
    };
    await queue(carol, 'p-z');
    await queue(alice, 'p-a');
    await queue(carol, 'p-a');
    const { pending } = await alice.locks.query();
    expect(pending.map((lock) => [lock.name, lock.clientId])).toEqual([
      ['p-z', carol.session],
      ['p-a', alice.session],
      ['p-a', carol.session],
    ]);
  });
});
