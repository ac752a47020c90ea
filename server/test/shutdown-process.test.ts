import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../test/helpers/lockwire-process.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { RawClient, upgradeStatusLine, within } from './server-harness.js';

type LogLine = Record<string, unknown>;

interface Serve {
  readonly child: ChildProcess;
  readonly url: string;
  readonly httpUrl: string;
  readonly port: number;
  readonly exited: Promise<number | null>;
  /** Resolves with the first log line (stderr, JSON) matching `match`. */
  log(match: (line: LogLine) => boolean, what: string): Promise<LogLine>;
}

const children: ChildProcess[] = [];
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }
});

/** Starts `lockwire serve --port 0 ARGS` as its own process and waits for its URL line. */
async function serve(args: string[]): Promise<Serve> {
  const child = spawn(
    process.execPath,
    ['server/bin/lockwire.mjs', 'serve', '--port', '0', '--heartbeat', '0', '--log-level', 'info', ...args],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (text) => {
    lines.push(JSON.parse(text) as LogLine);
    for (const wake of waiters) wake();
  });
  const log = (match: (line: LogLine) => boolean, what: string) =>
    within(
      new Promise<LogLine>((resolve) => {
        const check = () => {
          const found = lines.find(match);
          if (!found) return;
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      }),
      what,
      10_000,
    );
  const url = await within(
    new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        const found = /ws:\/\/\S+/.exec(line);
        if (found) resolve(found[0]);
      });
      void exited.then((code) => reject(new Error(`lockwire serve exited ${code}: ${JSON.stringify(lines)}`)));
    }),
    'the listening line',
    15_000,
  );
  const port = Number(new URL(url).port);
  return { child, url, httpUrl: `http://127.0.0.1:${port}`, port, exited, log };
}

async function connect(url: string) {
  const { client } = await RawClient.connect(url);
  clients.push(client);
  return client;
}

function terminate(proc: Serve): void {
  if (proc.child.pid === undefined) throw new Error('no pid');
  process.kill(proc.child.pid, 'SIGTERM');
}

describe('lockwire serve on SIGTERM', () => {
  it('drains: /healthz 503 and upgrades refused at once, pending acquires answered shutting_down, 1001, exit 0', async () => {
    const proc = await serve(['--drain-delay', '2000', '--shutdown-timeout', '9000']);
    const holder = await connect(proc.url);
    const waiter = await connect(proc.url);
    expect(await holder.request({ op: 'acquire', id: 1, key: 'deploy' })).toMatchObject({ acquired: true });
    waiter.send({ op: 'acquire', id: 7, key: 'deploy' });
    await waiter.next((f) => f.type === 'queued', 'queued');

    terminate(proc);
    const stopLine = await proc.log((l) => l['msg'] === 'stop signal received; draining', 'the stop signal line');
    expect(stopLine).toMatchObject({ level: 30, drainDelay: 2000, shutdownTimeout: 9000 });
    await proc.log((l) => l['msg'] === 'draining', 'the draining line');
    const health = await within(fetch(`${proc.httpUrl}/healthz`), 'GET /healthz');
    expect(health.status).toBe(503);
    expect(await upgradeStatusLine(proc.port)).toBe('HTTP/1.1 503 Service Unavailable');

    expect(await waiter.reply(7)).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(await within(waiter.closed, 'the waiter close', 10_000)).toMatchObject({ code: 1001 });
    expect(await within(holder.closed, 'the holder close', 10_000)).toMatchObject({ code: 1001 });
    expect(await within(proc.exited, 'the exit', 10_000)).toBe(0);
    await proc.log((l) => l['msg'] === 'lockwire stopped', 'the stopped line');
  }, 30_000);

  describe('on the Redis store', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = await startRedisServer();
    });
    afterAll(async () => {
      await redis.stop();
    });

    it("releases the draining node's locks at once, not after the node TTL", async () => {
      const redisArgs = ['--store', 'redis', '--redis-url', redis.url, '--node-ttl', '60000'];
      const leaving = await serve(redisArgs);
      const staying = await serve(redisArgs);
      const holder = await connect(leaving.url);
      const waiter = await connect(staying.url);
      expect(await holder.request({ op: 'acquire', id: 1, key: 'job' })).toMatchObject({ acquired: true });
      waiter.send({ op: 'acquire', id: 1, key: 'job' });
      await waiter.next((f) => f.type === 'queued', 'queued');

      terminate(leaving);
      expect(await within(holder.closed, 'the holder close', 10_000)).toMatchObject({ code: 1001 });
      // Well inside the 60 s node TTL: the lock was released by the drain.
      expect(await within(waiter.reply(1), 'the handoff', 10_000)).toMatchObject({ acquired: true });
      expect(await within(leaving.exited, 'the exit', 10_000)).toBe(0);
    }, 60_000);
  });
});
