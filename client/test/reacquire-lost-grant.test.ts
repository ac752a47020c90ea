import { afterEach, describe, expect, it } from 'vitest';
import { LockClient } from '@lockwire/client';
import { createLockServer, createMemoryStore, type LockServer } from '@lockwire/server';
import { gatedStore, nextEvent, within } from './fixtures.js';

describe('a grant whose hold is gone before the reply came', () => {
  const servers: LockServer[] = [];
  const clients: LockClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function setUp() {
    const { store, holdNextAcquire } = gatedStore(createMemoryStore());
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    const connect = async () => {
      const client = await LockClient.connect(server.url, { reconnect: false, keepalive: false });
      clients.push(client);
      return client;
    };
    const a = await connect();
    /** `a` holds k; its re-acquire of k has run on the server, its reply held back until `gate.open()`. */
    const reacquireHeldBack = async () => {
      const first = await a.acquire('k');
      if (!first) throw new Error('not granted');
      const gate = holdNextAcquire();
      const again = a.acquire('k');
      await gate.ran;
      return { first, gate, again };
    };
    return { holdNextAcquire, reacquireHeldBack, a, b: await connect() };
  }

  it('arrives as a lost lease when a re-acquire of a held key is answered after the hold was stolen', async () => {
    const { holdNextAcquire, a, b } = await setUp();
    const first = await a.acquire('k');
    if (!first) throw new Error('not granted');
    const lost = nextEvent(a, 'lost');
    const gate = holdNextAcquire();
    const again = a.acquire('k');
    await gate.ran;
    const thief = await b.acquire('k', { steal: true });
    expect(thief?.held).toBe(true);
    expect(await lost).toMatchObject({ key: 'k', token: first.token, reason: 'stolen' });
    expect(first.held).toBe(false);
    gate.open();
    const second = await within(again, 2000, 'the re-acquire reply');
    expect(second?.token).toBe(first.token);
    expect(second?.state).toBe('lost');
    expect(second?.signal.aborted).toBe(true);
    expect(second?.signal.reason).toMatchObject({ code: 'stolen' });
    expect(a.leases.has('k')).toBe(false);
    expect((await b.status('k')).holders).toHaveLength(1);
  });

  it('answers acquireLock false when the grant it waited for arrives already lost', async () => {
    const { holdNextAcquire, a, b } = await setUp();
    expect(await a.acquireLock('k')).toBe(true);
    const lost = nextEvent(a, 'lost');
    const gate = holdNextAcquire();
    const again = a.acquireLock('k');
    await gate.ran;
    expect((await b.acquire('k', { steal: true }))?.held).toBe(true);
    await lost;
    gate.open();
    expect(await within(again, 2000, 'the acquireLock answer')).toBe(false);
    expect(await a.isLockHolder('k')).toBe(false);
  });

  it('rejects a Web Lock request with an AbortError, never calling back, when granted the stolen hold', async () => {
    const { holdNextAcquire, a, b } = await setUp();
    const first = await a.acquire('k');
    if (!first) throw new Error('not granted');
    const gate = holdNextAcquire();
    let called = false;
    const request = a.locks.request('k', () => {
      called = true;
      return 'ran';
    });
    const outcome = request.then(
      (value) => ({ resolved: value }),
      (error: unknown) => error,
    );
    await gate.ran;
    const lost = nextEvent(a, 'lost');
    await b.acquire('k', { steal: true });
    await lost;
    gate.open();
    expect(await within(outcome, 2000, 'the request')).toMatchObject({ name: 'AbortError' });
    expect(called).toBe(false);
    expect((await b.status('k')).holders).toHaveLength(1);
  });

  it('arrives as a lost lease when a queued grant was stolen before the acquire was answered', async () => {
    const { holdNextAcquire, a, b } = await setUp();
    const holder = await b.acquire('k');
    if (!holder) throw new Error('not granted');
    const gate = holdNextAcquire();
    const queued = a.acquire('k');
    await gate.ran;
    const lost = nextEvent(a, 'lost');
    // Granted to a (settled while its answer is held back), then stolen by b.
    await holder.release();
    expect((await b.acquire('k', { steal: true }))?.held).toBe(true);
    const { token } = await lost;
    gate.open();
    const lease = await within(queued, 2000, 'the queued acquire');
    expect(lease?.token).toBe(token);
    expect(lease?.state).toBe('lost');
    expect(a.leases.has('k')).toBe(false);
  });

  it('grants a held lease to the next acquire once the key is free again', async () => {
    const { reacquireHeldBack, a, b } = await setUp();
    const { first, gate, again } = await reacquireHeldBack();
    const lost = nextEvent(a, 'lost');
    const thief = await b.acquire('k', { steal: true });
    await lost;
    gate.open();
    expect((await within(again, 2000, 'the re-acquire reply'))?.held).toBe(false);
    await thief?.release();
    const next = await a.acquire('k', { acquireTimeout: 0 });
    expect(next?.held).toBe(true);
    expect(next?.token).toBeGreaterThan(first.token);
    expect(a.leases.get('k')).toBe(next);
  });

  it('sends a release made while a re-acquire of its hold is out only once that is answered, then ends the one lease both name', async () => {
    const { reacquireHeldBack, a } = await setUp();
    const { first, gate, again } = await reacquireHeldBack();
    // A release names only the key: read beside a re-acquire that got a new hold, it would end that hold.
    const releasing = first.release();
    await a.ping();
    expect({ state: first.state, heldByYou: (await a.status('k')).heldByYou }).toEqual({ state: 'held', heldByYou: true });
    gate.open();
    expect(await within(again, 2000, 'the re-acquire reply')).toBe(first);
    await within(releasing, 2000, 'the release');
    expect(first.state).toBe('released');
    expect(first.signal.aborted).toBe(false);
    expect((await a.status('k')).heldByYou).toBe(false);
    expect(a.leases.has('k')).toBe(false);
  });

  it('leaves a newer lease in the book, so that its loss still reaches it, when a re-acquire of an older hold is answered late', async () => {
    const { reacquireHeldBack, a, b } = await setUp();
    const { first, gate, again } = await reacquireHeldBack();
    const revoked = nextEvent(a, 'lost');
    expect(await b.revoke('k')).toBe(1);
    await within(revoked, 2000, 'the revoke');
    // A steal is sent at once, beside the re-acquire still in flight (another acquire of k would wait for that one).
    const newer = await within(a.acquire('k', { steal: true }), 2000, 'the new acquire');
    if (!newer) throw new Error('not granted');
    expect(newer.token).toBeGreaterThan(first.token);
    gate.open();
    const late = await within(again, 2000, 'the re-acquire reply');
    expect(late?.token).toBe(first.token);
    expect(late?.held).toBe(false);
    expect(a.leases.get('k')).toBe(newer);
    const lost = nextEvent(a, 'lost');
    await b.acquire('k', { steal: true });
    expect(await within(lost, 2000, 'the lost')).toMatchObject({ token: newer.token, reason: 'stolen' });
    expect(newer.state).toBe('lost');
    expect(newer.signal.reason).toMatchObject({ code: 'stolen' });
    expect(a.leases.has('k')).toBe(false);
  });

  it('arrives lost with its own hold\'s reason, not that of a newer hold lost since', async () => {
    const { reacquireHeldBack, a, b } = await setUp();
    const { first, gate, again } = await reacquireHeldBack();
    // The hold the late re-acquire names is revoked...
    const revoked = nextEvent(a, 'lost');
    expect(await b.revoke('k')).toBe(1);
    expect(await within(revoked, 2000, 'the revoke')).toMatchObject({ token: first.token, reason: 'revoked' });
    // ...then this client gets a newer hold (a steal, sent at once beside the re-acquire in flight), which is stolen.
    const newer = await within(a.acquire('k', { steal: true }), 2000, 'the new acquire');
    if (!newer) throw new Error('not granted');
    const stolen = nextEvent(a, 'lost');
    await b.acquire('k', { steal: true });
    expect(await within(stolen, 2000, 'the steal')).toMatchObject({ token: newer.token, reason: 'stolen' });
    gate.open();
    const late = await within(again, 2000, 'the re-acquire reply');
    expect(late?.token).toBe(first.token);
    expect(late?.state).toBe('lost');
    expect(late?.signal.reason).toMatchObject({ code: 'revoked' });
  });
});
