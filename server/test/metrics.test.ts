import { afterEach, describe, expect, it } from 'vitest';
import { signToken } from '../src/cli-token.js';
import { createManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockMetrics } from '../src/metrics.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { createStubStore, RawClient, sessionLog, within } from './server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => {})));
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: LockServerOptions = {}) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, ...options });
  servers.push(server);
  return server;
}

async function connect(server: LockServer) {
  const { client, welcome } = await RawClient.connect(server.url);
  clients.push(client);
  return { client, session: String(welcome['session']) };
}

/** Samples of a Prometheus text exposition, by `name{labels}` as written. */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

async function scrape(server: LockServer) {
  const res = await within(fetch(`${server.httpUrl}/metrics`), 'GET /metrics');
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples = parseSamples(text);
  /** The value of a sample; a missing one fails the test, naming it. */
  const value = (name: string): number => {
    const found = samples.get(name);
    if (found === undefined) throw new Error(`no sample ${name} in:\n${text}`);
    return found;
  };
  return { value, text, type: res.headers.get('content-type') ?? '' };
}

const outcome = (name: string) => `lockwire_acquires_total{outcome="${name}"}`;

describe('GET /metrics', () => {
  it('serves the Prometheus text format with the process defaults', async () => {
    const server = await start();
    const { text, type, value } = await scrape(server);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain('# TYPE lockwire_acquires_total counter');
    expect(text).toContain('# TYPE lockwire_handoff_seconds histogram');
    expect(value('process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(value('lockwire_connections{store="memory"}')).toBe(0);
  });

  it('moves the gauges, outcomes, grants, handoff and wait histograms with a queue workload', async () => {
    const server = await start();
    const a = await connect(server);
    const b = await connect(server);
    let m = await scrape(server);
    expect(m.value('lockwire_connections{store="memory"}')).toBe(2);
    expect(m.value('lockwire_sessions{store="memory"}')).toBe(2);

    expect(await a.client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    b.client.send({ op: 'acquire', id: 1, key: 'k' });
    await b.client.next((f) => f.type === 'queued', 'queued');
    m = await scrape(server);
    expect(m.value('lockwire_locks_held{store="memory"}')).toBe(1);
    expect(m.value('lockwire_waiters{store="memory"}')).toBe(1);
    expect(m.value(outcome('granted_immediately'))).toBe(1);
    expect(m.value(outcome('queued'))).toBe(1);
    expect(m.value('lockwire_handoff_seconds_count')).toBe(0);

    expect(await a.client.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ ok: true });
    expect(await b.client.reply(1)).toMatchObject({ acquired: true });
    m = await scrape(server);
    expect(m.value(outcome('granted_after_wait'))).toBe(1);
    expect(m.value('lockwire_grants_total')).toBe(2);
    expect(m.value('lockwire_handoff_seconds_count')).toBe(1);
    expect(m.value('lockwire_acquire_wait_seconds_count')).toBe(1);
    expect(m.value('lockwire_locks_held{store="memory"}')).toBe(1);
    expect(m.value('lockwire_waiters{store="memory"}')).toBe(0);

    expect(await a.client.request({ op: 'acquire', id: 3, key: 'k', acquireTimeout: 0 })).toMatchObject({
      acquired: false,
    });
    a.client.send({ op: 'acquire', id: 4, key: 'k' });
    await a.client.next((f) => f.type === 'queued', 'queued');
    expect(await a.client.request({ op: 'cancel', id: 5, target: 4 })).toMatchObject({ cancelled: true });
    expect(await a.client.request({ op: 'release', id: 6, key: 'nothing' })).toMatchObject({ ok: false });
    m = await scrape(server);
    expect(m.value(outcome('not_granted'))).toBe(1);
    expect(m.value(outcome('cancelled'))).toBe(1);
    expect(m.value(outcome('queued'))).toBe(2);
    expect(m.value('lockwire_errors_total{code="cancelled"}')).toBe(1);
    expect(m.value('lockwire_errors_total{code="not_holder"}')).toBe(1);

    // A disconnect ends b's hold: a's queued acquire is handed the lock.
    a.client.send({ op: 'acquire', id: 7, key: 'k' });
    await a.client.next((f) => f.type === 'queued', 'queued');
    await b.client.close();
    expect(await a.client.reply(7)).toMatchObject({ acquired: true });
    m = await scrape(server);
    expect(m.value('lockwire_handoff_seconds_count')).toBe(2);
    expect(m.value(outcome('granted_after_wait'))).toBe(2);
    expect(m.value('lockwire_connections{store="memory"}')).toBe(1);
    expect(m.value('lockwire_locks_held{store="memory"}')).toBe(1);
  });

  it('counts timed-out acquires, expirations, steals and revokes', async () => {
    const clock = createManualClock();
    const server = await start({ clock });
    const a = await connect(server);
    const b = await connect(server);

    await a.client.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 1000 });
    b.client.send({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 500 });
    await b.client.next((f) => f.type === 'queued', 'queued');
    clock.advance(500);
    expect(await b.client.reply(1)).toMatchObject({ acquired: false });
    b.client.send({ op: 'acquire', id: 2, key: 'k' });
    await b.client.next((f) => f.type === 'queued', 'queued');
    clock.advance(500);
    await a.client.next((f) => f.type === 'lost', 'lost');
    expect(await b.client.reply(2)).toMatchObject({ acquired: true });
    let m = await scrape(server);
    expect(m.value(outcome('timed_out'))).toBe(1);
    expect(m.value('lockwire_locks_lost_total{reason="expired"}')).toBe(1);
    expect(m.value('lockwire_handoff_seconds_count')).toBe(1);

    await a.client.request({ op: 'acquire', id: 3, key: 'k', steal: true });
    await b.client.next((f) => f.type === 'lost', 'lost');
    expect(await b.client.request({ op: 'revoke', id: 4, key: 'k' })).toMatchObject({ revoked: 1 });
    await a.client.next((f) => f.type === 'lost', 'lost');
    m = await scrape(server);
    expect(m.value('lockwire_locks_lost_total{reason="stolen"}')).toBe(1);
    expect(m.value('lockwire_locks_lost_total{reason="revoked"}')).toBe(1);
    expect(m.value('lockwire_locks_held{store="memory"}')).toBe(0);
  });

  it('answers a draining acquire as an error outcome and keeps each server its own registry', async () => {
    const first = await start();
    const second = await start();
    const a = await connect(first);
    const b = await connect(first);
    await a.client.request({ op: 'acquire', id: 1, key: 'k' });
    b.client.send({ op: 'acquire', id: 1, key: 'k' });
    await b.client.next((f) => f.type === 'queued', 'queued');
    expect((await scrape(second)).value(outcome('queued'))).toBe(0);

    await first.close();
    expect(await b.client.reply(1)).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    const text = await first.metrics.scrape();
    expect(parseSamples(text).get(outcome('error'))).toBe(1);
    expect(parseSamples(text).get('lockwire_errors_total{code="shutting_down"}')).toBe(1);
  });

  it('counts an acquire refused before it reached the store as outcome error, once: malformed, a pending id, over the pending limit, over the rate', async () => {
    const clock = createManualClock();
    const server = await start({ clock, limits: { maxPendingPerSession: 1, rateBurst: 7, rateLimit: 1 } });
    const a = await connect(server);
    const b = await connect(server);
    await a.client.request({ op: 'acquire', id: 1, key: 'k' });
    b.client.send({ op: 'acquire', id: 1, key: 'k' });
    await b.client.next((f) => f.type === 'queued', 'queued');
    // The pending limit leaves the queued acquire out: a pending wait fills it.
    b.client.send({ op: 'wait', id: 7, key: 'k' });
    const refusals = [
      { op: 'acquire', id: 2, key: 5 },
      { op: 'acquire', id: 1, key: 'other' },
      { op: 'acquire', id: 3, key: 'other' },
      { op: 'nope', id: 4 },
      { op: 'release', id: 5, key: 7 },
      { op: 'acquire', id: 6, key: 'other' },
    ];
    const codes: unknown[] = [];
    for (const frame of refusals) codes.push(((await b.client.request(frame)).error as { code?: unknown }).code);
    expect(codes).toEqual(['bad_request', 'duplicate_id', 'rate_limited', 'bad_request', 'bad_request', 'rate_limited']);
    const m = await scrape(server);
    expect(m.value(outcome('error'))).toBe(4);
    expect(m.value(outcome('queued'))).toBe(1);
    expect(m.value(outcome('granted_immediately'))).toBe(1);
  });

  it('counts a forbidden acquire and one sent while expired credentials are acted on as outcome error', async () => {
    const secret = 'metrics-test-secret';
    const clock = createManualClock();
    let endStoreSession = () => {};
    const stub = createStubStore({
      closeSession: () =>
        new Promise<void>((resolve) => {
          endStoreSession = resolve;
        }),
    });
    const server = await start({ clock, store: stub.store, auth: { secret } });
    const claims = { sub: 'ana', locks: ['a:*'], watch: [], steal: [], admin: [] };
    const token = await signToken(claims, { secret, ttlSeconds: 30, now: clock.now() });
    const { client } = await RawClient.connect(server.url, { headers: { authorization: `Bearer ${token}` } });
    clients.push(client);
    expect(await client.request({ op: 'acquire', id: 1, key: 'b' })).toMatchObject({ error: { code: 'forbidden' } });
    clock.advance(30_000);
    // The session is now ending in the store; what it sends meanwhile is refused.
    expect(stub.calls.filter((c) => c.method === 'closeSession')).toHaveLength(1);
    expect(await client.request({ op: 'acquire', id: 2, key: 'a:1' })).toMatchObject({ error: { code: 'unauthorized' } });
    endStoreSession();
    expect(await within(client.closed, 'the 1008 close')).toMatchObject({ code: 1008 });
    // /metrics asks for credentials with auth on: read the registry itself.
    expect(parseSamples(await server.metrics.scrape()).get(outcome('error'))).toBe(2);
    expect(stub.calls.filter((c) => c.method === 'acquire')).toEqual([]);
  });

  it('asks for the same credentials as /v1/locks when auth is on', async () => {
    const secret = 'metrics-test-secret';
    const server = await start({ auth: { secret } });
    for (const path of ['/metrics', '/v1/locks']) {
      expect((await within(fetch(`${server.httpUrl}${path}`), path)).status).toBe(401);
    }
    const claims = { sub: 'prometheus', locks: [], watch: [''], steal: [], admin: [] };
    const token = await signToken(claims, { secret, ttlSeconds: 60, now: Date.now() });
    const res = await within(fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } }), 'GET /metrics');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('lockwire_connections');
  });

  it('records Redis script timings and failures given to observeScript', async () => {
    const metrics = createLockMetrics({ processMetrics: false });
    metrics.observeScript('acquire', 0.002, true);
    metrics.observeScript('acquire', 0.5, false);
    const samples = parseSamples(await metrics.scrape());
    expect(samples.get('lockwire_redis_script_seconds_count{script="acquire"}')).toBe(2);
    expect(samples.get('lockwire_redis_script_seconds_bucket{le="0.0025",script="acquire"}')).toBe(1);
    expect(samples.get('lockwire_redis_script_errors_total{script="acquire"}')).toBe(1);
    expect(samples.has('process_cpu_user_seconds_total')).toBe(false);
  });
});

describe('metrics of sessions in grace', () => {
  async function startWithGrace() {
    const clock = createManualClock(Date.now());
    const log = sessionLog();
    const server = await start({ clock, store: createMemoryStore({ clock }), sessionGrace: 5000, logger: log.logger });
    return { server, clock, log };
  }

  it('counts the locks a session in grace still holds in lockwire_locks_held', async () => {
    const { server, log } = await startWithGrace();
    const a = await connect(server);
    const b = await connect(server);
    await a.client.request({ op: 'acquire', id: 1, key: 'k' });
    a.client.ws.terminate();
    await log.closed(1, 'the drop');
    // Still held by the session in grace: nobody else gets it.
    expect(await b.client.request({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 0 })).toMatchObject({
      acquired: false,
    });
    expect((await scrape(server)).value('lockwire_locks_held{store="memory"}')).toBe(1);
  });

  it('records the handoff to the next waiter when a grace runs out', async () => {
    const { server, clock, log } = await startWithGrace();
    const a = await connect(server);
    const b = await connect(server);
    await a.client.request({ op: 'acquire', id: 1, key: 'k' });
    b.client.send({ op: 'acquire', id: 1, key: 'k' });
    await b.client.next((f) => f.type === 'queued', 'queued');
    a.client.ws.terminate();
    await log.closed(1, 'the drop');
    expect((await scrape(server)).value('lockwire_handoff_seconds_count')).toBe(0);
    clock.advance(5000);
    expect(await b.client.reply(1)).toMatchObject({ acquired: true });
    const m = await scrape(server);
    expect(m.value('lockwire_handoff_seconds_count')).toBe(1);
    expect(m.value('lockwire_locks_held{store="memory"}')).toBe(1);
  });
});
