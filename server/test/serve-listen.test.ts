import { createServer, type Server } from 'node:net';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listenProblem } from '../src/config-listen.js';
import { freePort, startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { processExists, ToolProcess } from '../../test/helpers/tool-process.js';

const processes: ToolProcess[] = [];
const occupied: Server[] = [];

afterEach(async () => {
  for (const proc of processes.splice(0)) proc.kill();
  await Promise.all(occupied.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Opens a listener on 127.0.0.1 port 0 and resolves the port it holds for the rest of the test. */
async function occupyPort(): Promise<number> {
  const server = createServer();
  occupied.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address !== 'object' || address === null) reject(new Error('no address'));
      else resolve(address.port);
    });
  });
}

function serve(args: string[], env: NodeJS.ProcessEnv = {}): ToolProcess {
  const proc = ToolProcess.lockwire(['serve', '--log-level', 'silent', ...args], env);
  processes.push(proc);
  return proc;
}

/** Awaits the exit and checks the process is gone and said one line on stderr and nothing on stdout. */
async function exitLine(proc: ToolProcess): Promise<{ code: number | null; line: string }> {
  const { code } = await proc.waitForExit(15_000);
  expect(processExists(proc.pid)).toBe(false);
  expect(proc.lines.stdout).toEqual([]);
  expect(proc.lines.stderr).toHaveLength(1);
  return { code, line: proc.lines.stderr[0] ?? '' };
}

describe('lockwire serve on a host or port it cannot listen on (process)', () => {
  it('exits 2 with one line naming the port already in use and the host', async () => {
    const port = await occupyPort();
    const { code, line } = await exitLine(serve(['--port', String(port)]));
    expect(code).toBe(2);
    expect(line).toBe(`lockwire: --port "${port}": port ${port} is already in use on 127.0.0.1`);
  });

  it('names the environment variable the busy port came from', async () => {
    const port = await occupyPort();
    const { code, line } = await exitLine(serve([], { LOCKWIRE_PORT: String(port) }));
    expect(code).toBe(2);
    expect(line).toBe(`lockwire: LOCKWIRE_PORT "${port}": port ${port} is already in use on 127.0.0.1`);
  });

  it('exits 2 with one line naming a host address that is not on this machine', async () => {
    const { code, line } = await exitLine(serve(['--port', '0', '--host', '192.0.2.1']));
    expect(code).toBe(2);
    expect(line).toBe(
      'lockwire: --host "192.0.2.1": host 192.0.2.1 cannot be listened on: the address is not on this machine (EADDRNOTAVAIL)',
    );
  });

  it('exits 1, not 2, with one line naming the Redis URL and what failed when the Redis store cannot be reached', async () => {
    const redisPort = await freePort();
    const url = `redis://127.0.0.1:${redisPort}`;
    const { code, line } = await exitLine(serve(['--port', '0', '--store', 'redis', '--redis-url', url]));
    expect(code).toBe(1);
    expect(line).toBe(
      `lockwire: --redis-url "${url}": could not connect to Redis within 4000 ms (last error: connect ECONNREFUSED 127.0.0.1:${redisPort})`,
    );
  });

  it('names the variable an unreachable Redis URL came from, its password redacted, on a cluster too', async () => {
    const redisPort = await freePort();
    const env = { LOCKWIRE_REDIS_URL: `redis://app:pa55word@127.0.0.1:${redisPort}` };
    for (const store of ['redis', 'redis-cluster']) {
      const { code, line } = await exitLine(serve(['--port', '0', '--store', store], env));
      expect(code).toBe(1);
      expect(line).toMatch(
        new RegExp(`^lockwire: LOCKWIRE_REDIS_URL "redis://app:REDACTED@127\\.0\\.0\\.1:${redisPort}": could not connect to Redis\\b.*ECONNREFUSED`),
      );
      expect(line).not.toContain('pa55word');
    }
  });

  describe('on the Redis store', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = await startRedisServer();
    });
    afterAll(async () => {
      await redis.stop();
    });

    it('closes the store before it exits 2: its node is no longer registered in Redis', async () => {
      const port = await occupyPort();
      const proc = serve(['--port', String(port), '--store', 'redis', '--redis-url', redis.url, '--node-ttl', '60000']);
      const { code, line } = await exitLine(proc);
      expect(code).toBe(2);
      expect(line).toBe(`lockwire: --port "${port}": port ${port} is already in use on 127.0.0.1`);
      const client = createClient({ url: redis.url });
      client.on('error', () => {});
      await client.connect();
      try {
        // The store registered its node before the listen failed: a store not
        // closed would leave it here for the 60 s node TTL.
        expect(await client.keys('lw:node:*')).toEqual([]);
        expect(await client.sMembers('lw:nodes')).toEqual([]);
      } finally {
        client.destroy();
      }
    }, 30_000);
  });
});

describe('listenProblem', () => {
  const source = (key: string) => `--${key}`;
  const config = { host: 'lockwire.internal', port: 8080 };

  function errno(message: string, fields: Record<string, unknown>): Error {
    return Object.assign(new Error(message), fields);
  }

  it('names the host for a name that does not resolve', () => {
    const error = errno('getaddrinfo ENOTFOUND lockwire.internal', {
      code: 'ENOTFOUND',
      syscall: 'getaddrinfo',
      hostname: 'lockwire.internal',
    });
    expect(listenProblem(error, config, source)).toBe(
      '--host "lockwire.internal": host lockwire.internal cannot be listened on: the name does not resolve (ENOTFOUND)',
    );
  });

  it('names the port for a port this user may not listen on', () => {
    const error = errno('listen EACCES: permission denied 127.0.0.1:80', {
      code: 'EACCES',
      syscall: 'listen',
      address: '127.0.0.1',
      port: 80,
    });
    expect(listenProblem(error, { host: '127.0.0.1', port: 80 }, source)).toBe(
      '--port "80": port 80 on 127.0.0.1 cannot be listened on: permission denied (EACCES)',
    );
  });

  it('leaves alone failures that are not the listen settings: a lookup of another host, a store error, a non-error', () => {
    const otherLookup = errno('getaddrinfo ENOTFOUND redis.internal', {
      code: 'ENOTFOUND',
      syscall: 'getaddrinfo',
      hostname: 'redis.internal',
    });
    const store = errno('connect ECONNREFUSED 127.0.0.1:6379', { code: 'ECONNREFUSED', syscall: 'connect' });
    const transient = errno('getaddrinfo EAI_AGAIN lockwire.internal', {
      code: 'EAI_AGAIN',
      syscall: 'getaddrinfo',
      hostname: 'lockwire.internal',
    });
    for (const error of [otherLookup, store, transient, new Error('could not connect to Redis within 4000 ms'), 'text']) {
      expect(listenProblem(error, config, source)).toBeUndefined();
    }
  });
});
