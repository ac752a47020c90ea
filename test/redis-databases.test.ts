import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LockServer } from '@lockwire/server';
import { configFileLayer } from '../server/src/config-file.js';
import { ConfigError, defaultsLayer, envLayer, flagLayer, resolveConfig, type ConfigLayer } from '../server/src/config.js';
import { keyNames } from '../server/src/redis/key-codec.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodesAt } from './helpers/redis-nodes.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { inProcessServes } from './helpers/serve-in-process.js';

/** Longest wait for a reply or an event; a missed one fails the test instead of hanging it. */
const WAIT_MS = 5000;

let redis: RedisServer | undefined;
const servers: LockServer[] = [];
const clients: RawClient[] = [];
const dir = mkdtempSync(join(tmpdir(), 'lockwire-databases-'));

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function redisUrl(): string {
  if (!redis) throw new Error('the redis-server is started in beforeAll');
  return redis.url;
}

let runs = 0;
/** A namespace no other test uses, so each starts from empty tables in every database. */
const namespace = () => `dbs${process.pid}x${++runs}`;

async function connect(server: { readonly url: string }): Promise<RawClient> {
  const client = await RawClient.connect(server.url);
  clients.push(client);
  return client;
}

/** One node on database 0 and one on database 1 of one redis-server, in one namespace, as `--redis-url .../0` and `.../1` make. */
async function twoDatabases(): Promise<{ a: LockServer; b: LockServer }> {
  const shared = { namespace: namespace() };
  const [a] = await startNodesAt([`${redisUrl()}/0`], shared, servers);
  const [b] = await startNodesAt([`${redisUrl()}/1`], shared, servers);
  if (!a || !b) throw new Error('nodes');
  return { a, b };
}

describe('two deployments in two databases of one redis-server, in one namespace', () => {
  it('names the channels of database 0 by the namespace alone and those of another database with its number', () => {
    expect([keyNames('lw').eventChannel(), keyNames('lw').nodeChannel('n1')]).toEqual(['lw:e', 'lw:n:n1']);
    expect([keyNames('lw', 1).eventChannel(), keyNames('lw', 1).nodeChannel('n1')]).toEqual(['lw:db1:e', 'lw:db1:n:n1']);
    expect(keyNames('lw', 1).lockKeys('k')).toEqual(keyNames('lw').lockKeys('k'));
  });

  it('gives a watcher on the database 1 deployment no event of a lock taken on database 0', async () => {
    const { a, b } = await twoDatabases();
    const watcher = await connect(b);
    expect(await watcher.request({ op: 'watch', prefix: '' })).toMatchObject({ ok: true, locks: [] });
    const other = await connect(a);
    expect(await other.request({ op: 'acquire', key: 'doc', acquireTimeout: 0, meta: { owner: 'db0-tenant' } })).toMatchObject({ acquired: true });
    expect((await watcher.request({ op: 'list' })).locks).toEqual([]);
    const own = await connect(b);
    expect(await own.request({ op: 'acquire', key: 'mine', acquireTimeout: 0 })).toMatchObject({ acquired: true });
    // Database 0's event was published first: had it reached this node, it would be here before this one.
    await watcher.nextEvent('mine', 'acquired', { timeout: WAIT_MS });
    expect(watcher.received('event').map((event) => event.key)).toEqual(['mine']);
  });

  it('hands each deployment\'s own queue over, whatever the other does with the same key', async () => {
    const { a, b } = await twoDatabases();
    await (await connect(a)).request({ op: 'watch', prefix: '' });
    await (await connect(b)).request({ op: 'watch', prefix: '' });
    const [a1, a2, b1, b2] = await Promise.all([connect(a), connect(a), connect(b), connect(b)]);
    if (!a1 || !a2 || !b1 || !b2) throw new Error('clients');
    for (let round = 0; round < 20; round++) {
      expect(await a1.request({ op: 'acquire', key: 'x' })).toMatchObject({ acquired: true });
      expect(await b1.request({ op: 'acquire', key: 'x' })).toMatchObject({ acquired: true });
      a2.send({ op: 'acquire', id: `a${round}`, key: 'x' });
      b2.send({ op: 'acquire', id: `b${round}`, key: 'x' });
      await a2.next((m) => m.type === 'queued', { timeout: WAIT_MS });
      await b2.next((m) => m.type === 'queued', { timeout: WAIT_MS });
      await b1.request({ op: 'release', key: 'x' });
      await a1.request({ op: 'release', key: 'x' });
      expect(await b2.reply(`b${round}`, { timeout: WAIT_MS })).toMatchObject({ acquired: true });
      expect(await a2.reply(`a${round}`, { timeout: WAIT_MS })).toMatchObject({ acquired: true });
      await a2.request({ op: 'release', key: 'x' });
      await b2.request({ op: 'release', key: 'x' });
    }
  });

  it('shows a watcher on database 1 exactly its own table\'s steps on a key database 0 uses too', async () => {
    const { a, b } = await twoDatabases();
    const watcher = await connect(b);
    await watcher.request({ op: 'watch', prefix: '' });
    const a1 = await connect(a);
    const b1 = await connect(b);
    const tokens: number[] = [];
    for (let round = 0; round < 30; round++) {
      const other = a1.request({ op: 'acquire', key: 'x', meta: { secret: 'from db 0' } });
      const own = b1.request({ op: 'acquire', key: 'x' });
      await other;
      tokens.push(Number((await own).token));
      await Promise.all([a1.request({ op: 'release', key: 'x' }), b1.request({ op: 'release', key: 'x' })]);
    }
    const last = tokens.at(-1);
    await watcher.next((m) => m.type === 'event' && m.event === 'released' && m.session === b1.session && m.token === last, { timeout: WAIT_MS });
    const seen = watcher.received('event').map((e) => `${e.event} ${e.session === b1.session ? 'own' : 'other'} ${String(e.token)}`);
    expect(seen).toEqual(tokens.flatMap((token) => [`acquired own ${token}`, `released own ${token}`]));
  });

  it('gives a watcher on database 1 every event of its own table while database 0 works the same key hard', async () => {
    const { a, b } = await twoDatabases();
    const watcher = await connect(b);
    await watcher.request({ op: 'watch', prefix: '' });
    const noisy = await Promise.all([0, 1, 2, 3].map(() => connect(a)));
    const own = await connect(b);
    let stop = false;
    const noise = noisy.map(async (client) => {
      while (!stop) {
        await client.request({ op: 'acquire', key: 'x' });
        await client.request({ op: 'release', key: 'x' });
      }
    });
    const tokens: number[] = [];
    try {
      for (let round = 0; round < 150; round++) {
        tokens.push(Number((await own.request({ op: 'acquire', key: 'x' })).token));
        await own.request({ op: 'release', key: 'x' });
      }
    } finally {
      stop = true;
      await Promise.all(noise);
    }
    const last = tokens.at(-1);
    await watcher.next((m) => m.type === 'event' && m.event === 'released' && m.token === last, { timeout: WAIT_MS });
    const events = watcher.received('event');
    const ownSteps = events.filter((e) => e.session === own.session).map((e) => `${e.event} ${String(e.token)}`);
    expect(ownSteps, 'its own table\'s steps').toEqual(tokens.flatMap((token) => [`acquired ${token}`, `released ${token}`]));
    expect(events.filter((e) => e.session !== own.session), 'the other table\'s steps').toEqual([]);
  }, 60_000);
});

const serves = inProcessServes({ waitMs: WAIT_MS });
afterEach(() => serves.stopAll());

/**
 * Runs `lockwire serve --port 0 --store redis ...args` in process with `env`
 * (logs silenced) and resolves the URL it printed; the server is stopped
 * after the test. Fails when it exits or has not listened within `WAIT_MS`.
 */
function serve(args: string[], env: Record<string, string> = {}): Promise<string> {
  return serves.listen(['--store', 'redis', ...args], env);
}

describe('lockwire serve --redis-namespace', () => {
  it('keeps two deployments on one Redis database apart when their namespaces differ, from the flag, the file or the environment', async () => {
    const url = redisUrl();
    const config = join(dir, 'second.json');
    writeFileSync(config, JSON.stringify({ redisNamespace: `${namespace()}-second` }));
    const first = await serve(['--redis-url', url, '--redis-namespace', `${namespace()}-first`]);
    const second = await serve(['--redis-url', url, '--config', config]);
    const secondPeer = await serve(['--redis-url', url], { LOCKWIRE_CONFIG: config });
    const watcher = await connect({ url: second });
    expect(await watcher.request({ op: 'watch', prefix: '' })).toMatchObject({ ok: true, locks: [] });
    const holder = await connect({ url: first });
    expect(await holder.request({ op: 'acquire', key: 'shared', acquireTimeout: 0 })).toMatchObject({ acquired: true });
    // The same key is free in the other deployment, and its watcher hears only that deployment's step.
    const own = await connect({ url: secondPeer });
    expect(await own.request({ op: 'acquire', key: 'shared', acquireTimeout: 0 })).toMatchObject({ acquired: true });
    expect(await watcher.nextEvent('shared', 'acquired', { timeout: WAIT_MS })).toMatchObject({ session: own.session });
    expect(watcher.received('event')).toHaveLength(1);
    // Its own nodes share one table: a second client of it on the other node waits for the first.
    const waiter = await connect({ url: second });
    expect(await waiter.request({ op: 'acquire', key: 'shared', acquireTimeout: 0 })).toMatchObject({ acquired: false });
  });

  it('serves on one namespace taken from LOCKWIRE_REDIS_NAMESPACE', async () => {
    const url = redisUrl();
    const name = namespace();
    const first = await serve(['--redis-url', url], { LOCKWIRE_REDIS_NAMESPACE: name });
    const second = await serve(['--redis-url', url, '--redis-namespace', name]);
    const holder = await connect({ url: first });
    expect(await holder.request({ op: 'acquire', key: 'k', acquireTimeout: 0 })).toMatchObject({ acquired: true });
    const other = await connect({ url: second });
    expect(await other.request({ op: 'acquire', key: 'k', acquireTimeout: 0 })).toMatchObject({ acquired: false });
  });
});

describe('the redisNamespace setting', () => {
  const resolve = (layers: ConfigLayer[]) => () => resolveConfig([defaultsLayer(), ...layers]);
  const redis = flagLayer({ store: 'redis', 'redis-url': 'redis://127.0.0.1:6379' });

  it('defaults to lw and takes the flag over the environment over the file', () => {
    expect(resolve([redis])().redisNamespace).toBe('lw');
    const file = configFileLayer('lockwire.json', JSON.stringify({ redisNamespace: 'from-file' }));
    expect(resolve([file, redis])().redisNamespace).toBe('from-file');
    expect(resolve([file, envLayer({ LOCKWIRE_REDIS_NAMESPACE: 'from.env' }), redis])().redisNamespace).toBe('from.env');
    const flag = flagLayer({ store: 'redis', 'redis-url': 'redis://127.0.0.1:6379', 'redis-namespace': 'from_flag' });
    expect(resolve([file, envLayer({ LOCKWIRE_REDIS_NAMESPACE: 'from.env' }), flag])().redisNamespace).toBe('from_flag');
  });

  it('refuses a namespace the Redis store would refuse, naming the source: a colon, a brace, a glob, too long, empty in a file, not text', () => {
    const words = 'expected 1 to 64 of the letters A-Z and a-z, the digits, _, . and -';
    const cases: Array<[ConfigLayer, string]> = [
      [flagLayer({ 'redis-namespace': 'a:b' }), `--redis-namespace "a:b": ${words}`],
      [flagLayer({ 'redis-namespace': 'a{b}' }), `--redis-namespace "a{b}": ${words}`],
      [envLayer({ LOCKWIRE_REDIS_NAMESPACE: 'lw*' }), `LOCKWIRE_REDIS_NAMESPACE "lw*": ${words}`],
      [envLayer({ LOCKWIRE_REDIS_NAMESPACE: 'n'.repeat(65) }), `LOCKWIRE_REDIS_NAMESPACE "${'n'.repeat(65)}": ${words}`],
      [configFileLayer('lockwire.json', '{"redisNamespace": ""}'), `lockwire.json: redisNamespace "": ${words}`],
      [configFileLayer('lockwire.json', '{"redisNamespace": 7}'), `lockwire.json: redisNamespace "7": ${words}`],
    ];
    for (const [layer, message] of cases) {
      expect(resolve([redis, layer]), message).toThrow(new ConfigError(message));
    }
    expect(resolve([redis, flagLayer({ 'redis-namespace': 'n'.repeat(64) })])().redisNamespace).toBe('n'.repeat(64));
  });

  it('refuses a namespace beside the memory store, as it does a Redis URL, but not the default one', () => {
    expect(resolve([flagLayer({ 'redis-namespace': 'billing' })])).toThrow(
      /^--redis-namespace "billing": not used by the memory store \(default store "memory"\): add --store redis and a --redis-url .*, or leave the namespace out/,
    );
    expect(resolve([envLayer({ LOCKWIRE_REDIS_NAMESPACE: 'billing' }), flagLayer({ store: 'memory' })])().store).toBe('memory');
    expect(resolve([flagLayer({ 'redis-namespace': 'lw' })])().store).toBe('memory');
  });

  it('exits 2 with the usage for a bad --redis-namespace', async () => {
    const { exit, stderr } = await serves.run(['--store', 'redis', '--redis-url', redisUrl(), '--redis-namespace', 'a b']);
    expect(exit).toBe(2);
    expect(stderr).toMatch(/^lockwire: --redis-namespace "a b": expected 1 to 64 of the letters/);
    expect(stderr).toMatch(/--redis-namespace NAME +redis stores: prefix of the keys and channels.*\(env LOCKWIRE_REDIS_NAMESPACE, default lw\)/);
  });
});
