import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from './helpers/raw-client.js';
import { useRedisNodes } from './helpers/redis-nodes.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const NODE_TTL = 1000;

/** Acquires, retrying while the store answers store_unavailable; returns the final reply and how many were refused. */
async function acquireWhenAvailable(client: RawClient, key: string, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  let refused = 0;
  for (;;) {
    const reply = await client.request({ op: 'acquire', key, acquireTimeout: 0 });
    const error = reply.error as { code?: string } | undefined;
    if (reply.ok === true && reply.acquired === true) return { reply, refused };
    if (error?.code !== 'store_unavailable' && reply.acquired !== false) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
    refused++;
    if (Date.now() > deadline) throw new Error(`still not granted after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sends a request until the store stops answering store_unavailable; returns that reply. */
async function requestWhenAvailable(client: RawClient, message: Record<string, unknown>, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const reply = await client.request(message);
    if ((reply.error as { code?: string } | undefined)?.code !== 'store_unavailable') return reply;
    if (Date.now() > deadline) throw new Error(`still store_unavailable after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('lockwire nodes as separate processes', () => {
  let redis: RedisServer;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(child.pid, 'SIGKILL');
        await exited;
      }),
    );
    await redis.stop();
  });

  /** Starts `lockwire serve --store redis` and resolves its WebSocket URL from its first stdout line. */
  async function serveNode(): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(
      process.execPath,
      ['server/bin/lockwire.mjs', 'serve', '--port', '0', '--store', 'redis', '--redis-url', redis.url, '--node-ttl', String(NODE_TTL), '--log-level', 'warn'],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('lockwire serve printed no URL within 15 s')), 15_000);
      lines.on('line', (line) => {
        const match = /ws:\/\/\S+/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[0]);
        }
      });
      child.once('exit', (code) => reject(new Error(`lockwire serve exited with ${code}`)));
    });
    return { url, child };
  }

  it('a node killed with SIGKILL has its locks released and its queued requests dropped by the survivors once its node TTL runs out', async () => {
    const [n1, n2, n3] = [await serveNode(), await serveNode(), await serveNode()];
    const a = await RawClient.connect(n1.url);
    const b = await RawClient.connect(n2.url);
    const c = await RawClient.connect(n3.url);
    const held = await a.request({ op: 'acquire', key: 'job' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    await b.request({ op: 'acquire', key: 'other' });
    a.send({ op: 'acquire', id: 'q', key: 'other' });
    await a.next((m) => m.type === 'queued');
    c.send({ op: 'acquire', id: 'w', key: 'job' });
    await c.next((m) => m.type === 'queued');

    const died = new Promise((resolve) => n1.child.once('exit', resolve));
    if (n1.child.pid !== undefined) process.kill(n1.child.pid, 'SIGKILL');
    await died;
    // Liveness runs on real timers in the nodes' processes: this bound only guards against a hang.
    const granted = await c.reply('w', { timeout: NODE_TTL + 3000 });
    expect(granted).toMatchObject({ ok: true, acquired: true });
    expect(granted.token).toBeGreaterThan(held.token as number);
    // The dead node's queued request is gone too: releasing `other` leaves it free.
    await b.request({ op: 'release', key: 'other' });
    const other = await c.request({ op: 'status', key: 'other' });
    expect(other).toMatchObject({ locked: false, queue: [] });
    for (const client of [b, c]) await client.close();
  });
});

describe('Redis failures under in-process nodes', () => {
  const fixture = useRedisNodes('faults');

  async function twoNodes(): Promise<[RawClient, RawClient]> {
    const [s1, s2] = await fixture.startNodes(2, { nodeTtl: NODE_TTL, commandTimeout: 500 });
    if (!s1 || !s2) throw new Error('nodes');
    return [await fixture.connect(s1), await fixture.connect(s2)];
  }

  it('after a Redis restart the holder hears revoked before anyone else is granted, and tokens keep rising', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    await fixture.redis.restart();
    const { reply, refused } = await acquireWhenAvailable(b, 'k');
    expect(refused).toBeGreaterThan(0);
    // By the time the other node granted, the holder had been told.
    expect(a.received('lost')).toEqual([{ type: 'lost', key: 'k', token: held.token, reason: 'revoked' }]);
    expect(reply.token).toBeGreaterThan(held.token as number);
  });

  it('answers store_unavailable while Redis is down, reports held locks lost once the node TTL runs out, and recovers when Redis is back', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    await fixture.redis.kill();
    const refused = await b.request({ op: 'acquire', key: 'other' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'store_unavailable' } });
    // Liveness runs on real timers: this bound only guards against a hang.
    expect(await a.nextLost('k', { timeout: NODE_TTL + 2000 })).toEqual({ type: 'lost', key: 'k', token: held.token, reason: 'revoked' });
    await fixture.redis.restart();
    const { reply } = await acquireWhenAvailable(b, 'k');
    expect(reply.token).toBeGreaterThan(held.token as number);
    // The other node may still be in its own holdoff after finding Redis restarted.
    expect(await requestWhenAvailable(a, { op: 'acquire', key: 'k', acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: false });
  });

  it('answers a queued acquire and a pending wait store_unavailable, not acquired or free false, when their node loses Redis', async () => {
    const [a, b] = await twoNodes();
    expect(await a.request({ op: 'acquire', key: 'k' })).toMatchObject({ acquired: true });
    const queuedId = b.id();
    const queued = b.request({ op: 'acquire', id: queuedId, key: 'k' }, { timeout: NODE_TTL + 3000 });
    await b.next((m) => m.type === 'queued' && m.id === queuedId);
    const waiting = b.request({ op: 'wait', key: 'k' }, { timeout: NODE_TTL + 3000 });
    // The status runs after the wait on the same Redis connection: the wait is pending by its reply.
    expect(await b.request({ op: 'status', key: 'k' })).toMatchObject({ ok: true, locked: true });
    await fixture.redis.kill();
    const unavailable = { ok: false, error: { code: 'store_unavailable' } };
    expect(await queued).toMatchObject(unavailable);
    expect(await waiting).toMatchObject(unavailable);
    await fixture.redis.restart();
    const { reply } = await acquireWhenAvailable(b, 'k');
    expect(reply).toMatchObject({ acquired: true });
  });
});
