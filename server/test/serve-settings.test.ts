import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startLockwireProcess } from '../../test/helpers/lockwire-process.js';
import { inProcessServes } from '../../test/helpers/serve-in-process.js';
import { configFileLayer } from '../src/config-file.js';
import { defaultsLayer, envLayer, flagLayer, resolveConfig } from '../src/config.js';
import { upgradeStatus } from './auth-harness.js';
import { within } from './server-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'lockwire-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeFile(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** The first line of what serve wrote on stderr: the problem, before the usage. */
function problem(stderr: string): string {
  return stderr.split('\n')[0] ?? '';
}

const serves = inProcessServes();
afterEach(() => serves.stopAll());

describe('empty settings', () => {
  it('counts an empty flag as unset, so it leaves the value of the environment in place', () => {
    const config = resolveConfig([
      defaultsLayer(),
      envLayer({
        LOCKWIRE_AUTH_SECRET: 'the secret of the environment',
        LOCKWIRE_AUTH_AUDIENCE: 'locks',
        LOCKWIRE_ALLOW_ORIGIN: 'https://app.example',
        LOCKWIRE_HOST: '0.0.0.0',
      }),
      flagLayer({ 'auth-secret': '', 'auth-audience': '', 'allow-origin': [''], host: '' }),
    ]);
    expect(config).toMatchObject({
      authSecret: 'the secret of the environment',
      authAudience: 'locks',
      allowOrigin: ['https://app.example'],
      host: '0.0.0.0',
    });
  });

  it.each([
    ['LOCKWIRE_ALLOW_ORIGIN=" "', { LOCKWIRE_ALLOW_ORIGIN: ' ' }, {}],
    ['LOCKWIRE_ALLOW_ORIGIN=" , "', { LOCKWIRE_ALLOW_ORIGIN: ' , ' }, {}],
    ['--allow-origin " "', {}, { 'allow-origin': [' '] }],
    ['--allow-origin ","', {}, { 'allow-origin': [','] }],
  ])("counts %s as unset, leaving the config file's Origin check in place", (_name, env, flags) => {
    const file = configFileLayer('lockwire.json', JSON.stringify({ allowOrigin: ['https://app.example.com'] }));
    const config = resolveConfig([defaultsLayer(), file, envLayer(env), flagLayer(flags)]);
    expect(config.allowOrigin).toEqual(['https://app.example.com']);
  });

  it('counts a variable of blanks as unset for every setting, so the file keeps its secret', () => {
    const file = configFileLayer('lockwire.json', JSON.stringify({ authSecret: 'the secret of the config file', port: 7400 }));
    const config = resolveConfig([defaultsLayer(), file, envLayer({ LOCKWIRE_AUTH_SECRET: ' ', LOCKWIRE_PORT: '\t' })]);
    expect(config).toMatchObject({ authSecret: 'the secret of the config file', port: 7400 });
  });

  it('keeps authentication on when an empty --auth-secret meets the LOCKWIRE_AUTH_SECRET of the environment', async () => {
    const started = await serves.run(['--auth-secret='], { LOCKWIRE_AUTH_SECRET: 'a long enough secret of the environment' });
    expect(started.stderr).toBe('');
    expect(started.url).not.toBeNull();
    expect(await upgradeStatus(started.url ?? '')).toBe(401);
  });
});

describe('a setting another one requires', () => {
  it('names the flag and variable of a Redis URL that --store redis needs and nothing gave', () => {
    expect(() => resolveConfig([defaultsLayer(), flagLayer({ store: 'redis' })])).toThrow(
      /^--redis-url \(or LOCKWIRE_REDIS_URL\): required with --store redis or redis-cluster$/,
    );
  });
});

describe('the log level', () => {
  it('takes a level name in any case from every source, and warning for warn, as pino\'s lower-case name', () => {
    const level = (...layers: Parameters<typeof resolveConfig>[0]) => resolveConfig([defaultsLayer(), ...layers]).logLevel;
    expect(level(flagLayer({ 'log-level': 'DEBUG' }))).toBe('debug');
    expect(level(envLayer({ LOCKWIRE_LOG_LEVEL: 'Error' }))).toBe('error');
    expect(level(envLayer({ LOG_LEVEL: 'WARN' }))).toBe('warn');
    expect(level(envLayer({ LOG_LEVEL: 'INFO' }))).toBe('info');
    expect(level(configFileLayer('lockwire.json', JSON.stringify({ logLevel: 'Fatal' })))).toBe('fatal');
    expect(level(envLayer({ LOG_LEVEL: 'WARNING' }))).toBe('warn');
    expect(level(flagLayer({ 'log-level': 'warning' }))).toBe('warn');
    expect(level(envLayer({ LOG_LEVEL: 'SILENT' }))).toBe('silent');
  });

  it('starts with LOG_LEVEL=WARN, the upper case platforms set it in', async () => {
    const started = await serves.run([], { LOCKWIRE_LOG_LEVEL: '', LOG_LEVEL: 'WARN' });
    expect(started.exit).toBeNull();
    expect(started.url).not.toBeNull();
  });

  it('exits 2 naming the source for a level name it does not know, in any case', async () => {
    const byEnv = await serves.run([], { LOCKWIRE_LOG_LEVEL: '', LOG_LEVEL: 'LOUD' });
    expect(byEnv.exit).toBe(2);
    expect(problem(byEnv.stderr)).toBe(
      'lockwire: LOG_LEVEL "LOUD": expected one of: trace, debug, info, warn, error, fatal, silent (in any case; warning for warn)',
    );
    const byFlag = await serves.run(['--log-level', 'Verbose']);
    expect(byFlag.exit).toBe(2);
    expect(problem(byFlag.stderr)).toMatch(/^lockwire: --log-level "Verbose": expected one of/);
    const settings = writeFile('log-level.json', { logLevel: 'Chatty' });
    const byFile = await serves.run(['--config', settings], { LOCKWIRE_LOG_LEVEL: '' });
    expect(byFile.exit).toBe(2);
    expect(problem(byFile.stderr)).toMatch(new RegExp(`^lockwire: ${settings}: logLevel "Chatty": expected one of`));
    const notText = writeFile('log-level-number.json', { logLevel: 30 });
    const byNumber = await serves.run(['--config', notText], { LOCKWIRE_LOG_LEVEL: '' });
    expect(byNumber.exit).toBe(2);
    expect(problem(byNumber.stderr)).toMatch(new RegExp(`^lockwire: ${notText}: logLevel "30": expected one of`));
  });
});

describe('auth settings that would leave the server open', () => {
  it('refuses to start with --auth-audience but neither a secret nor a JWKS, naming the setting', async () => {
    const started = await serves.run(['--auth-audience', 'locks']);
    expect(started.exit).toBe(2);
    expect(started.stderr).toMatch(/^lockwire: --auth-audience "locks": requires --auth-secret or --auth-jwks-file/);
  });

  it('refuses to start with LOCKWIRE_AUTH_ISSUER but neither a secret nor a JWKS, naming the variable', async () => {
    const started = await serves.run([], { LOCKWIRE_AUTH_ISSUER: 'https://id.example' });
    expect(started.exit).toBe(2);
    expect(started.stderr).toMatch(/^lockwire: LOCKWIRE_AUTH_ISSUER "https:\/\/id\.example": requires --auth-secret/);
  });
});

describe('a Redis URL beside the memory store', () => {
  it('exits 2 for a --redis-url, a LOCKWIRE_REDIS_URL or a file\'s redisUrl without --store, naming the fix', async () => {
    const byFlag = await serves.run(['--redis-url', 'redis://ops:sekret-pw@10.0.0.5:6379']);
    expect(byFlag.exit).toBe(2);
    expect(problem(byFlag.stderr)).toBe(
      'lockwire: --redis-url "redis://ops:REDACTED@10.0.0.5:6379": not used by the memory store (default store "memory"): ' +
        'add --store redis to keep the lock table in this Redis (--store redis-cluster for a cluster), or leave the URL out to serve from memory without it',
    );
    expect(byFlag.stderr).not.toContain('sekret-pw');
    const byEnv = await serves.run([], { LOCKWIRE_REDIS_URL: 'redis://10.0.0.5:7000,redis://10.0.0.6:7000' });
    expect(byEnv.exit).toBe(2);
    expect(problem(byEnv.stderr)).toMatch(
      /^lockwire: LOCKWIRE_REDIS_URL "[^"]+": not used by the memory store \(default store "memory"\): add --store redis .*, or give --store memory to serve from memory without it$/,
    );
    const settings = writeFile('redis-url-only.json', { redisUrl: 'redis://10.0.0.5:6379' });
    const byFile = await serves.run(['--config', settings]);
    expect(byFile.exit).toBe(2);
    expect(problem(byFile.stderr)).toMatch(new RegExp(`^lockwire: ${settings}: redisUrl "redis://10\\.0\\.0\\.5:6379": not used by the memory store`));
  });

  it('exits 2 when --store memory comes from the same source as the URL or one it outranks', async () => {
    const sameSource = await serves.run([], { LOCKWIRE_STORE: 'memory', LOCKWIRE_REDIS_URL: 'redis://10.0.0.5:6379' });
    expect(sameSource.exit).toBe(2);
    expect(problem(sameSource.stderr)).toMatch(/^lockwire: LOCKWIRE_REDIS_URL "[^"]+": not used by the memory store \(LOCKWIRE_STORE "memory"\)/);
    const settings = writeFile('store-memory.json', { store: 'memory' });
    const outranked = await serves.run(['--config', settings, '--redis-url', 'redis://10.0.0.5:6379']);
    expect(outranked.exit).toBe(2);
    expect(problem(outranked.stderr)).toMatch(/^lockwire: --redis-url "[^"]+": not used by the memory store \(.*store-memory\.json: store "memory"\)/);
  });

  it('serves from memory when --store memory outranks a machine-wide LOCKWIRE_REDIS_URL', async () => {
    const started = await serves.run(['--store', 'memory'], { LOCKWIRE_REDIS_URL: 'redis://10.0.0.5:6379' });
    expect(started.stderr).toBe('');
    expect(started.url).not.toBeNull();
  });

  it('reports the URL beside every other bad setting, and a list of URLs without --store as the same problem', () => {
    expect(() => resolveConfig([defaultsLayer(), flagLayer({ 'redis-url': 'redis://a:1,redis://b:2', port: 'eighty' })])).toThrow(
      /^--port "eighty": .*\n--redis-url "redis:\/\/a:1,redis:\/\/b:2": not used by the memory store/,
    );
  });
});

describe('settings the server would fail on later', () => {
  it('exits 2 naming the source and the entry for an allowed Origin with a path', async () => {
    const byFlag = await serves.run(['--allow-origin', 'https://app.example.com/app']);
    expect(byFlag.exit).toBe(2);
    expect(problem(byFlag.stderr)).toBe(
      'lockwire: --allow-origin "https://app.example.com/app": "https://app.example.com/app" is not an origin: expected scheme://host[:port] (no path), * or null',
    );
    const byEnv = await serves.run([], { LOCKWIRE_ALLOW_ORIGIN: 'https://a.example, https://b.example/?x=1' });
    expect(byEnv.exit).toBe(2);
    expect(problem(byEnv.stderr)).toMatch(
      /^lockwire: LOCKWIRE_ALLOW_ORIGIN "https:\/\/a\.example, https:\/\/b\.example\/\?x=1": "https:\/\/b\.example\/\?x=1" is not an origin/,
    );
  });

  it('exits 2 naming the source for a Redis URL that is not redis:// or rediss://, and for a list with --store redis', async () => {
    const http = await serves.run(['--store', 'redis', '--redis-url', 'http://127.0.0.1:6379']);
    expect(http.exit).toBe(2);
    expect(problem(http.stderr)).toBe(
      'lockwire: --redis-url "http://127.0.0.1:6379": "http://127.0.0.1:6379" is not a Redis URL: expected redis://host:port or rediss://host:port',
    );
    const cluster = await serves.run(['--store', 'redis-cluster'], { LOCKWIRE_REDIS_URL: 'redis://127.0.0.1:7000,127.0.0.1:7001' });
    expect(cluster.exit).toBe(2);
    expect(problem(cluster.stderr)).toMatch(/^lockwire: LOCKWIRE_REDIS_URL "[^"]+": "127\.0\.0\.1:7001" is not a Redis URL/);
    const list = await serves.run(['--store', 'redis', '--redis-url', 'redis://127.0.0.1:7000,redis://127.0.0.1:7001']);
    expect(list.exit).toBe(2);
    expect(problem(list.stderr)).toMatch(/^lockwire: --redis-url "[^"]+": one URL with --store redis/);
  });

  it('never prints a Redis password or the auth secret in a settings error', async () => {
    const query = await serves.run(['--store', 'redis', '--redis-url', 'redis://ops:sekret-pw@127.0.0.1:6379/?db=1']);
    expect(query.exit).toBe(2);
    expect(problem(query.stderr)).toBe(
      'lockwire: --redis-url "redis://ops:REDACTED@127.0.0.1:6379/?db=1": "redis://ops:REDACTED@127.0.0.1:6379/?db=1" is not a Redis URL: expected redis://host:port or rediss://host:port',
    );
    const list = await serves.run(['--store', 'redis'], { LOCKWIRE_REDIS_URL: 'redis://:sekret-pw@127.0.0.1:7000,redis://127.0.0.1:7001' });
    expect(list.exit).toBe(2);
    expect(problem(list.stderr)).toBe(
      'lockwire: LOCKWIRE_REDIS_URL "redis://:REDACTED@127.0.0.1:7000,redis://127.0.0.1:7001": one URL with --store redis; a list of nodes is for --store redis-cluster',
    );
    const unparsable = await serves.run(['--store', 'redis', '--redis-url', 'redis//ops:sekret-pw@host']);
    expect(unparsable.exit).toBe(2);
    expect(problem(unparsable.stderr)).toContain('"(unparsable URL)" is not a Redis URL');
    for (const run of [query, list, unparsable]) expect(run.stderr).not.toContain('sekret-pw');
  });

  it('exits 2 naming the source for a Redis password or user name with a % that is not percent-encoding, without printing the password', async () => {
    const byFlag = await serves.run(['--store', 'redis', '--redis-url', 'redis://ops:50%off@127.0.0.1:6379']);
    expect(byFlag.exit).toBe(2);
    expect(problem(byFlag.stderr)).toBe(
      'lockwire: --redis-url "redis://ops:REDACTED@127.0.0.1:6379": the password of "redis://ops:REDACTED@127.0.0.1:6379" is not percent-encoded: write a % in it as %25',
    );
    const byEnv = await serves.run(['--store', 'redis-cluster'], {
      LOCKWIRE_REDIS_URL: 'redis://127.0.0.1:7000,redis://100%ops:pw-%zz@127.0.0.1:7001',
    });
    expect(byEnv.exit).toBe(2);
    expect(problem(byEnv.stderr)).toMatch(
      /^lockwire: LOCKWIRE_REDIS_URL "[^"]+": the user name and password of "redis:\/\/100%ops:REDACTED@127\.0\.0\.1:7001" are not percent-encoded: write a % in them as %25/,
    );
    const settings = writeFile('redis-percent.json', { store: 'redis', redisUrl: 'rediss://ops:%ff@127.0.0.1:6380' });
    const byFile = await serves.run(['--config', settings]);
    expect(byFile.exit).toBe(2);
    expect(problem(byFile.stderr)).toMatch(new RegExp(`^lockwire: ${settings}: redisUrl "[^"]+": the password of "[^"]+" is not percent-encoded`));
    for (const run of [byFlag, byEnv, byFile]) {
      expect(run.stderr).not.toMatch(/50%off|pw-%zz|%ff|URIError/);
    }
  });

  it('accepts a Redis password whose % is written %25', () => {
    const config = resolveConfig([defaultsLayer(), flagLayer({ store: 'redis', 'redis-url': 'redis://ops:50%25off@127.0.0.1:6379' })]);
    expect(config.redisUrl).toBe('redis://ops:50%25off@127.0.0.1:6379');
  });

  it('prints every bad setting on a line of its own, each prefixed with lockwire:, before the usage', async () => {
    const started = await serves.run(['--max-payload', '5'], { LOCKWIRE_HEARTBEAT: '10s' });
    expect(started.exit).toBe(2);
    const [first, second, blank] = started.stderr.split('\n');
    expect([first, second]).toEqual([
      expect.stringMatching(/^lockwire: --max-payload "5": /),
      expect.stringMatching(/^lockwire: LOCKWIRE_HEARTBEAT "10s": /),
    ]);
    expect(blank).toBe('');
  });

  it('exits 2 for Redis Cluster node URLs that differ in password or scheme, or name a database, without printing the password', async () => {
    const cluster = (url: string) => serves.run(['--store', 'redis-cluster', '--redis-url', url]);
    const passwords = await cluster('redis://:sekret-pw@127.0.0.1:7000,redis://:other-pw@127.0.0.1:7001');
    expect(passwords.exit).toBe(2);
    expect(problem(passwords.stderr)).toBe(
      'lockwire: --redis-url "redis://:REDACTED@127.0.0.1:7000,redis://:REDACTED@127.0.0.1:7001": the node URLs that give credentials must give the same user and password',
    );
    const schemes = await cluster('rediss://127.0.0.1:7000,redis://127.0.0.1:7001');
    expect(schemes.exit).toBe(2);
    expect(problem(schemes.stderr)).toMatch(/: the node URLs must be all redis:\/\/ or all rediss:\/\/$/);
    const database = await cluster('redis://127.0.0.1:7000/2');
    expect(database.exit).toBe(2);
    expect(problem(database.stderr)).toMatch(/: a Redis Cluster has database 0 only/);
    for (const run of [passwords, schemes, database]) expect(run.stderr).not.toContain('sekret-pw');
  });

  it('accepts Redis URLs with credentials, TLS and a database number', () => {
    const config = (store: string, url: string) => resolveConfig([defaultsLayer(), flagLayer({ store, 'redis-url': url })]);
    expect(config('redis', 'redis://user:pass@10.0.0.5:6379/2').redisUrl).toBe('redis://user:pass@10.0.0.5:6379/2');
    expect(config('redis', 'rediss://cache.example:6380').redisUrl).toBe('rediss://cache.example:6380');
    expect(config('redis-cluster', 'redis://a:7000, redis://b:7001').redisUrl).toBe('redis://a:7000, redis://b:7001');
    expect(config('redis-cluster', 'rediss://ops:pw@a:7000,rediss://b:7001/0').redisUrl).toBe('rediss://ops:pw@a:7000,rediss://b:7001/0');
  });

  it('exits 2 naming the source and the file for a JWKS file of anything but public signature keys', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const cases: Array<[unknown, string]> = [
      [{ keys: ['not a key'] }, 'keys[0]: not a JWK'],
      [{ keys: [await exportJWK(publicKey), await exportJWK(privateKey)] }, 'keys[1]: a private key'],
      [{ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, 'keys[0]: a symmetric key'],
      [{ keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] }, 'keys[0]: not a valid EC public key'],
      [
        { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }), kid: 'old' }] },
        'keys[0] (kid "old"): an RSA key of 1024 bits',
      ],
      [
        { keys: [{ ...(await exportJWK(publicKey)), kid: 'e1', use: 'enc' }] },
        'no key can verify a token: keys[0] (kid "e1"): use "enc": not a signature key (use "sig")',
      ],
      [{ keys: [] }, 'the keys array is empty'],
      [[], 'expected a JSON object with a keys array'],
      ['{"keys": [', 'not valid JSON'],
    ];
    for (const [index, [content, expected]] of cases.entries()) {
      const file = writeFile(`jwks-${index}.json`, content);
      const started = await serves.run(['--auth-jwks-file', file]);
      expect(started.exit).toBe(2);
      expect(problem(started.stderr)).toContain(`lockwire: --auth-jwks-file ${JSON.stringify(file)}: ${expected}`);
    }
    const settings = writeFile('settings.json', { authJwksFile: join(dir, 'jwks-0.json') });
    const byFile = await serves.run(['--config', settings]);
    expect(byFile.exit).toBe(2);
    expect(problem(byFile.stderr)).toMatch(new RegExp(`^lockwire: ${settings}: authJwksFile "[^"]+": keys\\[0\\]: not a JWK`));
    const missing = join(dir, 'missing.json');
    const byEnv = await serves.run([], { LOCKWIRE_AUTH_JWKS_FILE: missing });
    expect(byEnv.exit).toBe(2);
    expect(problem(byEnv.stderr)).toMatch(/^lockwire: LOCKWIRE_AUTH_JWKS_FILE "[^"]+": cannot be read: .*ENOENT/);
  });

  it('serves with a JWKS file of public keys, refusing connections without a token', async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const file = writeFile('good.json', { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
    const started = await serves.run(['--auth-jwks-file', file]);
    expect(started.stderr).toBe('');
    expect(await upgradeStatus(started.url ?? '')).toBe(401);
  });

  it('serves with a JWKS file of encryption and signature keys, logging a warning that names the file and each key it skips', async () => {
    const sig = await generateKeyPair('ES256');
    const enc = await generateKeyPair('ECDH-ES', { crv: 'X25519' });
    const file = writeFile('mixed.json', {
      keys: [
        { ...(await exportJWK(enc.publicKey)), kid: 'e1', use: 'enc' },
        { ...(await exportJWK(sig.publicKey)), kid: 's1', alg: 'ES256' },
      ],
    });
    const warnings: Array<{ level: number; msg: string }> = [];
    let warned: () => void = () => {};
    const firstWarning = new Promise<void>((resolve) => {
      warned = resolve;
    });
    const lockwire = await startLockwireProcess({
      args: ['--auth-jwks-file', file],
      onLog: (line) => {
        const entry = JSON.parse(line) as { level: number; msg: string };
        if (entry.level < 40) return;
        warnings.push(entry);
        warned();
      },
    });
    try {
      await within(firstWarning, 'the warning of the skipped key');
      expect(warnings).toEqual([
        expect.objectContaining({
          level: 40,
          msg: `--auth-jwks-file ${JSON.stringify(file)}: keys[0] (kid "e1"): skipped, no token is verified with it: use "enc": not a signature key (use "sig")`,
        }),
      ]);
      expect(await upgradeStatus(lockwire.url)).toBe(401);
    } finally {
      await within(lockwire.stop(), 'lockwire serve to stop');
    }
  });
});
