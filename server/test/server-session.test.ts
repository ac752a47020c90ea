import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockError } from '../src/errors.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import type { AcquireInput, LockEvent, WaitInput } from '../src/store.js';
import { callArgs, createStubStore, RawClient, within } from './server-harness.js';


const servers: LockServer[] = [];
const clients: RawClient[] = [];

async function start(options: LockServerOptions & { stub?: ReturnType<typeof createStubStore> } = {}) {
  const stub = options.stub ?? createStubStore({}, options.limits);
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, ...options, store: stub.store });
  servers.push(server);
  const connect = async () => {
    const connection = await RawClient.connect(server.url);
    clients.push(connection.client);
    return connection;
  };
  return { server, stub, connect };
}

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('session layer', () => {
  it('greets every connection with a welcome naming its session, the protocol and the limits', async () => {
    const { connect } = await start({ limits: { maxLocksPerSession: 7 } });
    const { welcome } = await connect();
    const { welcome: other } = await connect();
    expect(welcome).toEqual({
      type: 'welcome',
      session: expect.any(String),
      protocol: 1,
      server: expect.stringMatching(/^lockwire\/\d+\.\d+\.\d+/),
      limits: {
        maxPayload: 65536,
        maxKeyLength: 256,
        maxLocksPerSession: 7,
        maxWaitersPerKey: 10000,
        maxWatchesPerSession: 100,
        maxPendingPerSession: 1000,
        maxConnections: 10000,
        maxBufferedBytes: 4194304,
        rateLimit: 1000,
        rateBurst: 2000,
      },
    });
    expect(other.session).not.toBe(welcome.session);
  });

  it('answers a binary frame with bad_request and id null, and keeps the connection', async () => {
    const { connect } = await start();
    const { client } = await connect();
    client.ws.send(Buffer.from('{"op":"ping","id":1}'), { binary: true });
    const reply = await client.reply(null);
    expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true, at: expect.any(Number) });
  });

  it('answers a 10 KB frame whose op is nested thousands of arrays deep with bad_request, and keeps serving', async () => {
    const { connect } = await start();
    const { client } = await connect();
    const depth = 5000;
    client.ws.send(`{"op":${'['.repeat(depth)}${']'.repeat(depth)},"id":1}`);
    expect(await client.reply(1)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
  });

  it('answers invalid JSON, unknown ops and bad fields with bad_request, keeping the connection', async () => {
    const { connect, stub } = await start();
    const { client } = await connect();
    client.ws.send('{nope');
    expect(await client.reply(null)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    client.send({ op: 'fly', id: 'a' });
    expect(await client.reply('a')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    client.send({ op: 'acquire', id: 3, key: 'k', colour: 'red' });
    expect(await client.reply(3)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    client.send({ op: 'status', id: 4, key: 'x'.repeat(257) });
    expect(await client.reply(4)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(stub.calls.filter((c) => c.method === 'acquire' || c.method === 'status')).toEqual([]);
    expect(await client.request({ op: 'ping', id: 5 })).toMatchObject({ ok: true });
  });

  it('applies acquire defaults and answers a queued acquire with queued, then the grant', async () => {
    const { connect, stub } = await start();
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 1, key: 'doc' });
    expect(await client.next()).toEqual({ type: 'queued', id: 1, key: 'doc', position: 1 });
    const [session, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    expect(session).toBe(welcome.session);
    expect(input).toEqual({
      ticket: expect.any(Number),
      key: 'doc',
      mode: 'exclusive',
      acquireTimeout: null,
      holdTimeout: null,
      steal: false,
      meta: null,
    });
    stub.listener().granted(session, input.ticket, { key: 'doc', token: 9, expiresAt: null });
    expect(await client.next()).toEqual({ type: 'reply', id: 1, ok: true, acquired: true, token: 9, expiresAt: null });
  });

  it('answers a grant that arrives before the store call resolved after the queued message', async () => {
    const outcome = deferred<{ status: 'queued'; position: number }>();
    const stub = createStubStore({ acquire: () => outcome.promise });
    const { connect } = await start({ stub });
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 'a', key: 'k' });
    await vi.waitUntil(() => stub.calls.some((c) => c.method === 'acquire'), { timeout: 2000 });
    const [, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    stub.listener().granted(String(welcome.session), input.ticket, { key: 'k', token: 3, expiresAt: 5 });
    outcome.resolve({ status: 'queued', position: 2 });
    expect(await client.next()).toMatchObject({ type: 'queued', id: 'a', position: 2 });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 'a', ok: true, acquired: true, token: 3 });
  });

  it('routes acquire timeouts and finished waits to their requests', async () => {
    const { connect, stub } = await start();
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 50 });
    await client.next((f) => f.type === 'queued');
    client.send({ op: 'wait', id: 2, key: 'k', timeout: 10 });
    await vi.waitUntil(() => stub.calls.some((c) => c.method === 'wait'), { timeout: 2000 });
    const [, acquire] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    const [, wait] = callArgs(stub.calls, 'wait') as [string, WaitInput];
    expect(wait).toEqual({ ticket: expect.any(Number), key: 'k', timeout: 10 });
    expect(wait.ticket).not.toBe(acquire.ticket);
    stub.listener().waitDone(String(welcome.session), wait.ticket, false);
    expect(await client.reply(2)).toEqual({ type: 'reply', id: 2, ok: true, free: false });
    stub.listener().acquireTimedOut(String(welcome.session), acquire.ticket);
    expect(await client.reply(1)).toEqual({ type: 'reply', id: 1, ok: true, acquired: false });
  });

  it('answers duplicate_id while a request with that id is queued, and the queued one stays pending', async () => {
    const { connect, stub } = await start();
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 7, key: 'k' });
    await client.next((f) => f.type === 'queued');
    client.send({ op: 'ping', id: 7 });
    expect(await client.reply(7)).toMatchObject({ ok: false, error: { code: 'duplicate_id' } });
    const [, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    stub.listener().granted(String(welcome.session), input.ticket, { key: 'k', token: 1, expiresAt: null });
    expect(await client.reply(7)).toMatchObject({ ok: true, acquired: true, token: 1 });
    // Once answered, the id is free again; a number and a string are different ids.
    expect(await client.request({ op: 'ping', id: 7 })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'ping', id: '7' })).toMatchObject({ ok: true });
  });

  it('answers duplicate_id while the store has not yet answered a request with that id', async () => {
    const status = deferred<never>();
    const stub = createStubStore({ status: () => status.promise });
    const { connect } = await start({ stub });
    const { client } = await connect();
    client.send({ op: 'status', id: 's', key: 'k' });
    client.send({ op: 'release', id: 's', key: 'k' });
    expect(await client.reply('s')).toMatchObject({ ok: false, error: { code: 'duplicate_id' } });
    expect(stub.calls.filter((c) => c.method === 'release')).toEqual([]);
  });

  it('answers duplicate_id, not bad_request, to a malformed request that reuses a pending id, and the pending one stays pending', async () => {
    const { connect, stub } = await start();
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 7, key: 'k' });
    await client.next((f) => f.type === 'queued');
    client.send({ op: 'acquire', id: 7, key: 'k2', mode: 'upgrade' });
    expect(await client.reply(7)).toMatchObject({ ok: false, error: { code: 'duplicate_id' } });
    client.send({ op: 'nope', id: 7 });
    expect(await client.reply(7)).toMatchObject({ ok: false, error: { code: 'duplicate_id' } });
    expect(stub.calls.filter((c) => c.method === 'acquire')).toHaveLength(1);
    const [, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    stub.listener().granted(String(welcome.session), input.ticket, { key: 'k', token: 1, expiresAt: null });
    expect(await client.reply(7)).toMatchObject({ ok: true, acquired: true, token: 1 });
  });

  it('answers the cancelled acquire with cancelled before answering the cancel', async () => {
    const { connect, stub } = await start();
    const { client } = await connect();
    client.send({ op: 'acquire', id: 1, key: 'k' });
    await client.next((f) => f.type === 'queued');
    client.send({ op: 'cancel', id: 2, target: 1 });
    const first = await client.next();
    const second = await client.next();
    expect(first).toMatchObject({ type: 'reply', id: 1, ok: false, error: { code: 'cancelled' } });
    expect(second).toEqual({ type: 'reply', id: 2, ok: true, cancelled: true });
    const [, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    expect(callArgs(stub.calls, 'cancel')[1]).toBe(input.ticket);
  });

  it('answers cancelled:false when the target is not a pending acquire or wait, or the store had settled it', async () => {
    const stub = createStubStore({ cancel: async () => false });
    const { connect } = await start({ stub });
    const { client } = await connect();
    expect(await client.request({ op: 'cancel', id: 1, target: 99 })).toEqual({
      type: 'reply',
      id: 1,
      ok: true,
      cancelled: false,
    });
    client.send({ op: 'wait', id: 2, key: 'k' });
    await vi.waitUntil(() => stub.calls.some((c) => c.method === 'wait'), { timeout: 2000 });
    expect(await client.request({ op: 'cancel', id: 3, target: 2 })).toMatchObject({ cancelled: false });
    expect(stub.calls.filter((c) => c.method === 'cancel')).toHaveLength(1);
  });

  it('answers internal for an unexpected store failure, logs it and keeps the connection', async () => {
    const logged: unknown[] = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (obj: object) => logged.push(obj) };
    const stub = createStubStore({
      release: async () => {
        throw new TypeError('boom');
      },
      extend: async () => {
        throw new LockError('not_holder', 'key: not held');
      },
    });
    const { connect } = await start({ stub, logger });
    const { client } = await connect();
    expect(await client.request({ op: 'release', id: 1, key: 'k' })).toEqual({
      type: 'reply',
      id: 1,
      ok: false,
      error: { code: 'internal', message: 'internal error' },
    });
    expect(logged).toHaveLength(1);
    expect(await client.request({ op: 'extend', id: 2, key: 'k', holdTimeout: 5 })).toMatchObject({
      ok: false,
      error: { code: 'not_holder', message: 'key: not held' },
    });
    expect(logged).toHaveLength(1);
    expect(await client.request({ op: 'ping', id: 3 })).toMatchObject({ ok: true });
  });

  it('answers status, list, extend, release, revoke and ping with the store results', async () => {
    const stub = createStubStore({ revoke: async () => 2, extend: async () => 1234 });
    const { connect } = await start({ stub });
    const { client, welcome } = await connect();
    expect(await client.request({ op: 'status', id: 1, key: 'k' })).toEqual({
      type: 'reply', id: 1, ok: true, key: 'k', locked: false, mode: null, holders: [], queue: [], heldByYou: false,
    });
    expect(callArgs(stub.calls, 'status')).toEqual(['k', welcome.session]);
    expect(await client.request({ op: 'list', id: 2 })).toEqual({ type: 'reply', id: 2, ok: true, locks: [], truncated: false });
    expect(callArgs(stub.calls, 'list')).toEqual(['', 1000, welcome.session]);
    expect(await client.request({ op: 'extend', id: 3, key: 'k', holdTimeout: 10 })).toMatchObject({ expiresAt: 1234 });
    expect(await client.request({ op: 'release', id: 4, key: 'k' })).toMatchObject({ ok: true, released: true });
    expect(await client.request({ op: 'revoke', id: 5, key: 'k' })).toMatchObject({ ok: true, revoked: 2 });
  });

  it('pushes lost to the session that held the lock', async () => {
    const { connect, stub } = await start();
    const { client, welcome } = await connect();
    const { client: other } = await connect();
    stub.listener().lost(String(welcome.session), { key: 'k', token: 4, reason: 'stolen' });
    expect(await client.next()).toEqual({ type: 'lost', key: 'k', token: 4, reason: 'stolen' });
    expect(await other.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    expect(other.inbox).toEqual([]);
  });
});

describe('watches', () => {
  const event: LockEvent = {
    key: 'doc:1', event: 'acquired', session: 's1', token: 3, mode: 'exclusive', meta: null, holders: 1, waiters: 0, at: 1,
  };

  it('streams events after the snapshot, serialising each event object once for all watchers', async () => {
    const { connect, stub } = await start();
    const { client: a } = await connect();
    const { client: b } = await connect();
    expect(await a.request({ op: 'watch', id: 1, prefix: 'doc:' })).toEqual({
      type: 'reply', id: 1, ok: true, locks: [], truncated: false,
    });
    await b.request({ op: 'watch', id: 1, prefix: 'doc:' });
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      for (const sink of stub.sinks) sink(event);
      const eventCalls = stringify.mock.calls.filter(([value]) => (value as { type?: unknown }).type === 'event');
      expect(eventCalls).toHaveLength(1);
    } finally {
      stringify.mockRestore();
    }
    expect(await a.next()).toEqual({ type: 'event', ...event });
    expect(await b.next()).toEqual({ type: 'event', ...event });
  });

  it('keeps one stream when the same prefix is watched twice, and unwatch ends it', async () => {
    const { connect, stub } = await start();
    const { client } = await connect();
    await client.request({ op: 'watch', id: 1, prefix: 'doc:' });
    expect(await client.request({ op: 'watch', id: 2, prefix: 'doc:' })).toMatchObject({ ok: true, locks: [] });
    // The repeat takes a fresh gap-free snapshot with a new stream and stops the old one.
    expect(stub.calls.filter((c) => c.method === 'watch')).toHaveLength(2);
    expect(stub.sinks).toHaveLength(1);
    expect(await client.request({ op: 'unwatch', id: 3, prefix: 'doc:' })).toEqual({ type: 'reply', id: 3, ok: true });
    expect(stub.sinks).toHaveLength(0);
  });

  it('sends an event once to a session even when several of its watched prefixes match the key', async () => {
    const { connect, stub } = await start();
    const { client } = await connect();
    await client.request({ op: 'watch', id: 1, prefix: 'd' });
    await client.request({ op: 'watch', id: 2, prefix: 'doc:' });
    await client.request({ op: 'watch', id: 3, prefix: 'x' });
    const other: LockEvent = { ...event, key: 'doc:2', token: 4 };
    for (const sink of [...stub.sinks]) sink(event);
    for (const sink of [...stub.sinks]) sink(other);
    expect(await client.next()).toEqual({ type: 'event', ...event });
    expect(await client.next()).toEqual({ type: 'event', ...other });
    expect(await client.request({ op: 'ping', id: 4 })).toMatchObject({ ok: true });
    expect(client.inbox).toEqual([]);
  });

  it('holds an event back until the snapshot reply of a matching watch still being started', async () => {
    const handle = deferred<{ snapshot: { locks: never[]; truncated: boolean }; stop: () => void }>();
    const stub = createStubStore();
    const { connect } = await start({ stub });
    const { client } = await connect();
    await client.request({ op: 'watch', id: 1, prefix: 'd' });
    const [wide] = stub.sinks;
    stub.behaviour.watch = async (_p, _l, _v, sink) => {
      sink(event);
      return handle.promise;
    };
    client.send({ op: 'watch', id: 2, prefix: 'doc:' });
    await vi.waitUntil(() => stub.calls.filter((c) => c.method === 'watch').length === 2, { timeout: 2000 });
    wide?.(event);
    // A round trip that is no barrier (a ping would wait for the held event).
    expect(await client.request({ op: 'status', id: 3, key: 'x' })).toMatchObject({ ok: true });
    expect(client.inbox).toEqual([]);
    handle.resolve({ snapshot: { locks: [], truncated: false }, stop: () => {} });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 2, ok: true });
    expect(await client.next()).toEqual({ type: 'event', ...event });
    expect(await client.request({ op: 'ping', id: 4 })).toMatchObject({ ok: true });
    expect(client.inbox).toEqual([]);
  });

  it('sends events the store pushed before the watch call resolved after the snapshot', async () => {
    const handle = deferred<{ snapshot: { locks: never[]; truncated: boolean }; stop: () => void }>();
    const stub = createStubStore({
      watch: async (_p, _l, _v, sink) => {
        sink(event);
        return handle.promise;
      },
    });
    const { connect } = await start({ stub });
    const { client } = await connect();
    client.send({ op: 'watch', id: 1, prefix: 'doc:' });
    await vi.waitUntil(() => stub.calls.some((c) => c.method === 'watch'), { timeout: 2000 });
    handle.resolve({ snapshot: { locks: [], truncated: false }, stop: () => {} });
    expect(await client.next()).toMatchObject({ type: 'reply', id: 1, ok: true });
    expect(await client.next()).toMatchObject({ type: 'event', key: 'doc:1' });
  });
});

describe('disconnect', () => {
  it('marks the session dead, closes it in the store, stops its watches and ignores late settlements', async () => {
    const { connect, stub, server } = await start();
    const { client, welcome } = await connect();
    client.send({ op: 'acquire', id: 1, key: 'k' });
    await client.next((f) => f.type === 'queued');
    await client.request({ op: 'watch', id: 2 });
    expect(server.sessionCount()).toBe(1);
    await client.close();
    await vi.waitUntil(() => stub.calls.some((c) => c.method === 'closeSession'), { timeout: 2000 });
    expect(callArgs(stub.calls, 'closeSession')).toEqual([welcome.session]);
    expect(server.sessionCount()).toBe(0);
    expect(stub.sinks).toHaveLength(0);
    const [, input] = callArgs(stub.calls, 'acquire') as [string, AcquireInput];
    // A settlement after the end reaches nobody and does not throw.
    stub.listener().granted(String(welcome.session), input.ticket, { key: 'k', token: 1, expiresAt: null });
    stub.listener().lost(String(welcome.session), { key: 'k', token: 1, reason: 'expired' });
  });
});

describe('close()', () => {
  it('answers pending requests shutting_down, closes sockets with 1001, closes the store, and is idempotent', async () => {
    const { connect, stub, server } = await start();
    const { client } = await connect();
    client.send({ op: 'acquire', id: 1, key: 'k' });
    await client.next((f) => f.type === 'queued');
    const first = server.close();
    const second = server.close();
    expect(second).toBe(first);
    expect(await client.reply(1)).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1001 });
    await within(first, 'close() to resolve');
    expect(stub.calls.filter((c) => c.method === 'closeSession')).toHaveLength(1);
    expect(stub.calls.filter((c) => c.method === 'close')).toHaveLength(1);
    const closeIndex = stub.calls.findIndex((c) => c.method === 'close');
    expect(stub.calls.findIndex((c) => c.method === 'closeSession')).toBeLessThan(closeIndex);
    await server.close();
    expect(stub.calls.filter((c) => c.method === 'close')).toHaveLength(1);
    await expect(RawClient.connect(server.url)).rejects.toThrow();
  });
});
