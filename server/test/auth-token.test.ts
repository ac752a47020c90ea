import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { main, type CliIo } from '../src/cli.js';
import { parseTtl, tokenCommand, type TokenIo } from '../src/cli-token.js';
import { SECRET, connectWith, startServer, upgradeStatus } from './auth-harness.js';

function tokenIo(env: Record<string, string> = {}, now = 1_800_000_000_000) {
  const out = { stdout: '', stderr: '' };
  const io: TokenIo = {
    stdout: { write: (text: string) => (out.stdout += text) },
    stderr: { write: (text: string) => (out.stderr += text) },
    env,
    now: () => now,
  };
  return { io, out };
}

describe('lockwire token', () => {
  it('prints an HS256 token with sub, the permission patterns and exp from --ttl', async () => {
    const { io, out } = tokenIo();
    const code = await tokenCommand(
      ['--sub', 'ana', '--locks', 'doc:*', '--locks', 'img:1', '--watch', '*', '--ttl', '15m', '--secret', SECRET],
      io,
    );
    expect(code).toBe(0);
    const claims = decodeJwt(out.stdout.trim());
    expect(claims).toEqual({
      sub: 'ana',
      locks: ['doc:*', 'img:1'],
      watch: ['*'],
      steal: [],
      admin: [],
      iat: 1_800_000_000,
      exp: 1_800_000_000 + 900,
    });
  });

  it('signs with LOCKWIRE_AUTH_SECRET, and the server accepts the token', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    const { io, out } = tokenIo({ LOCKWIRE_AUTH_SECRET: SECRET }, clock.now());
    expect(await tokenCommand(['--sub', 'bo', '--locks', 'k'], io)).toBe(0);
    const { client, welcome } = await connectWith(server.url, out.stdout.trim());
    expect(welcome).toMatchObject({ user: 'bo' });
    expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    expect(await client.request({ op: 'acquire', id: 2, key: 'other' })).toMatchObject({ error: { code: 'forbidden' } });
    const { io: otherIo, out: other } = tokenIo({ LOCKWIRE_AUTH_SECRET: 'not the server secret at all......' }, clock.now());
    await tokenCommand(['--sub', 'bo'], otherIo);
    expect(await upgradeStatus(`${server.url}?access_token=${other.stdout.trim()}`)).toBe(401);
  });

  it('exits 2 without --sub, without a secret or with a bad --ttl', async () => {
    for (const [args, env, problem] of [
      [['--secret', 's'], {}, '--sub is required'],
      [['--sub', 'a'], {}, 'no secret'],
      [['--sub', 'a', '--secret', 's', '--ttl', '1y'], {}, '--ttl'],
    ] as const) {
      const { io, out } = tokenIo(env);
      expect(await tokenCommand([...args], io)).toBe(2);
      expect(out.stderr).toContain(problem);
      expect(out.stdout).toBe('');
    }
  });

  it('is reachable as a command of lockwire', async () => {
    const out = { stdout: '', stderr: '' };
    const io: CliIo = {
      stdout: { write: (text: string) => (out.stdout += text) },
      stderr: { write: (text: string) => (out.stderr += text) },
      env: { LOCKWIRE_AUTH_SECRET: SECRET },
      onStopSignal: () => () => {},
    };
    expect(await main(['token', '--sub', 'cli'], io)).toBe(0);
    expect(decodeJwt(out.stdout.trim())).toMatchObject({ sub: 'cli' });
  });

  it('parses ttls with units', () => {
    expect(parseTtl('90')).toBeNull();
    expect(parseTtl('90s')).toBe(90);
    expect(parseTtl('2m')).toBe(120);
    expect(parseTtl('1h')).toBe(3600);
    expect(parseTtl('7d')).toBe(604_800);
    expect(parseTtl('0')).toBeNull();
    expect(parseTtl('-1h')).toBeNull();
  });
});
