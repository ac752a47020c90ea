import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import type { StoreReadiness } from '../src/store.js';
import { get, SECRET, startServer } from './auth-harness.js';
import { createStubStore, RawClient, within } from './server-harness.js';

const servers: LockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: LockServerOptions = {}) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, ...options });
  servers.push(server);
  return server;
}

/** One request on a connection of its own (a health checker's), as status, content type, text and parsed body. */
async function probe(server: LockServer, path = '/readyz', method = 'GET') {
  const { status, type, text } = await within(
    new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
      const req = request(`${server.httpUrl}${path}`, { method, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk) => (text += String(chunk)));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', text }));
      });
      req.on('error', reject);
      req.end();
    }),
    `${method} ${path}`,
  );
  return { status, type, text, body: text === '' ? null : (JSON.parse(text) as unknown) };
}

describe('GET /readyz', () => {
  it('answers 200 with the store kind and the sessions on a memory store, for GET and HEAD', async () => {
    const server = await start({ store: createMemoryStore() });
    const { client } = await RawClient.connect(server.url);
    const ready = await probe(server);
    expect(ready).toMatchObject({ status: 200, type: expect.stringMatching(/^application\/json/) });
    expect(ready.body).toEqual({ ok: true, store: 'memory', sessions: 1 });
    expect(await probe(server, '/readyz', 'HEAD')).toMatchObject({ status: 200, text: '' });
    await client.close();
  });

  it('answers 503 with reason draining from the first moment of a shutdown, as /healthz does', async () => {
    const clock = createManualClock();
    const server = await start({ clock, drainDelay: 60_000 });
    expect((await probe(server)).status).toBe(200);
    const closed = server.close();
    try {
      expect(await probe(server)).toMatchObject({ status: 503, body: { ok: false, reason: 'draining' } });
      expect(await probe(server, '/readyz', 'HEAD')).toMatchObject({ status: 503, text: '' });
      expect((await probe(server, '/healthz')).status).toBe(503);
    } finally {
      clock.advance(60_000);
      await within(closed, 'close() after the drain delay');
    }
  });

  it('answers 503 store_unavailable with the store\'s reason while the store is not ready, and /healthz stays 200', async () => {
    let readiness: StoreReadiness = { ready: false, reason: 'the lock store (Redis) is unreachable' };
    const stub = createStubStore();
    const server = await start({ store: { ...stub.store, readiness: () => readiness } });
    expect(await probe(server)).toMatchObject({
      status: 503,
      body: { ok: false, reason: 'store_unavailable', message: 'the lock store (Redis) is unreachable' },
    });
    expect(await probe(server, '/readyz', 'HEAD')).toMatchObject({ status: 503, text: '' });
    expect(await probe(server, '/healthz')).toMatchObject({ status: 200, body: { ok: true, store: 'stub' } });
    readiness = { ready: true };
    expect(await probe(server)).toMatchObject({ status: 200, body: { ok: true, store: 'stub', sessions: 0 } });
  });

  it('needs no credentials with auth on, as /healthz', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    expect(await get(server, '/readyz')).toMatchObject({ status: 200 });
    expect((await get(server, '/v1/locks')).status).toBe(401);
  });

  it('answers another method 405 allowing GET and HEAD', async () => {
    const server = await start();
    expect(await probe(server, '/readyz', 'POST')).toMatchObject({ status: 405, body: { error: { code: 'method_not_allowed' } } });
  });
});
