import { LockClient } from '@lockwire/client';
import { afterEach, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStore } from '../src/store.js';
import { RawClient, within } from './server-harness.js';

const servers: LockServer[] = [];
const proxies: TcpProxy[] = [];
const clients: LockClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe('session grace with the lockwire client', () => {
  it('resumes after a cut connection: the lease keeps its token and its signal, and nobody else got the lock', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: createMemoryStore(), sessionGrace: 10_000 });
    servers.push(server);
    const proxy = await startTcpProxy(server.port);
    proxies.push(proxy);
    const client = await LockClient.connect(proxy.url(server.url), { reconnect: { initialDelay: 1, maxDelay: 5, jitter: 0 } });
    clients.push(client);
    const lease = await client.acquire('doc:1');
    if (!lease) throw new Error('not granted');
    const session = client.session;
    const reconnected = new Promise<unknown>((resolve) => client.on('reconnect', resolve));
    proxy.cut();
    expect(await within(reconnected, 'the resume')).toMatchObject({ session, resumed: true });
    expect(lease.held).toBe(true);
    expect(lease.signal.aborted).toBe(false);
    const { client: observer } = await RawClient.connect(server.url);
    try {
      expect(await observer.request({ op: 'status', id: 1, key: 'doc:1' })).toMatchObject({
        holders: [{ session, token: lease.token }],
      });
      await lease.release();
      expect(await observer.request({ op: 'status', id: 2, key: 'doc:1' })).toMatchObject({ locked: false });
    } finally {
      observer.ws.terminate();
    }
  });

  it('resumes, keeping its lease, when its first reconnects find the store unreadable: they are refused 503, not given a fresh session', async () => {
    const inner = createMemoryStore();
    let statusReads = 0;
    let failReads = 0;
    // What a resume reads, and only that, fails for the first attempts.
    const store: LockStore = Object.assign(Object.create(inner) as LockStore, {
      start: (listener: Parameters<LockStore['start']>[0]) => inner.start(listener),
      status: (...args: Parameters<LockStore['status']>) => {
        statusReads++;
        if (failReads > 0) {
          failReads--;
          return Promise.reject(new Error('store down'));
        }
        return inner.status(...args);
      },
    });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store, sessionGrace: 10_000 });
    servers.push(server);
    const proxy = await startTcpProxy(server.port);
    proxies.push(proxy);
    const client = await LockClient.connect(proxy.url(server.url), { reconnect: { initialDelay: 1, maxDelay: 5, jitter: 0 } });
    clients.push(client);
    const lease = await client.acquire('doc:1');
    if (!lease) throw new Error('not granted');
    const session = client.session;
    const reconnected = new Promise<unknown>((resolve) => client.on('reconnect', resolve));
    failReads = 2;
    proxy.cut();
    expect(await within(reconnected, 'the resume')).toMatchObject({ session, resumed: true });
    expect(failReads).toBe(0);
    expect(statusReads).toBeGreaterThanOrEqual(3);
    expect(lease.held).toBe(true);
    expect(lease.signal.aborted).toBe(false);
  });

  it('aborts every lease at once when the server shuts down (1001), which released the locks', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: createMemoryStore(), sessionGrace: 60_000 });
    servers.push(server);
    const client = await LockClient.connect(server.url, { reconnect: { initialDelay: 1, maxDelay: 5, jitter: 0 } });
    clients.push(client);
    const lease = await client.acquire('doc:1');
    if (!lease) throw new Error('not granted');
    const disconnected = new Promise<{ code: number; reconnecting: boolean }>((resolve) => client.on('disconnect', resolve));
    await server.close();
    expect(await within(disconnected, 'the disconnect')).toMatchObject({ code: 1001, reconnecting: true });
    // The shutdown released the lock rather than keep it for the grace: the lease says so at once.
    expect(lease.held).toBe(false);
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toMatchObject({ code: 'connection_lost' });
  });

  it('close() hands the locks to the next waiter at once: a deliberate close gets no grace', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: createMemoryStore(), sessionGrace: 60_000 });
    servers.push(server);
    const client = await LockClient.connect(server.url);
    const lease = await client.acquire('doc:1');
    if (!lease) throw new Error('not granted');
    const { client: other } = await RawClient.connect(server.url);
    try {
      other.send({ op: 'acquire', id: 1, key: 'doc:1' });
      await other.next((f) => f.type === 'queued', 'the queued acquire');
      await client.close();
      expect(lease.signal.aborted).toBe(true);
      // Granted long before the 60 s grace could run out.
      expect(await other.reply(1)).toMatchObject({ ok: true, acquired: true });
    } finally {
      other.ws.terminate();
    }
  });
});
