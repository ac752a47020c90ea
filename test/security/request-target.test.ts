import { connect } from 'node:net';
import { createLockServer, type LockServer } from '@lockwire/server';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRequestUrl } from '../../server/src/request-url.js';
import { SECRET, token } from '../../server/test/auth-harness.js';
import { RawClient, within } from '../../server/test/server-harness.js';
import { startLockwireProcess, type LockwireProcess } from '../helpers/lockwire-process.js';

const servers: LockServer[] = [];
const processes: LockwireProcess[] = [];
const clients: RawClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await Promise.all(processes.splice(0).map((child) => child.kill()));
});

/** A plain GET of `target`, written as raw bytes (no client library would send most of these). */
const plainGet = (target: string) => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;

/** A WebSocket upgrade request to `target`, as raw bytes. */
const upgrade = (target: string) =>
  `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/** Writes `request` and resolves with the status code of the answer (0 when the socket closed without one). */
function statusOf(port: number, request: string): Promise<number> {
  return within(
    new Promise<number>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(request));
      let text = '';
      socket.on('data', (chunk) => {
        text += String(chunk);
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    }),
    `the answer to ${JSON.stringify(request.slice(0, 40))}`,
  );
}

/** True when the server answers /healthz and a fresh session can take a lock. */
async function serves(httpUrl: string, url: string, headers: Record<string, string> = {}): Promise<boolean> {
  const health = await within(fetch(`${httpUrl}/healthz`), 'GET /healthz');
  const { client } = await RawClient.connect(url, { headers });
  clients.push(client);
  const reply = await client.request({ op: 'acquire', id: 1, key: `after-${Math.random()}`, acquireTimeout: 0 });
  return health.status === 200 && reply.acquired === true;
}

/** Credentials that may do everything, for the servers with auth on. */
const bearer = { authorization: `Bearer ${await token({ sub: 'ops', locks: ['*'], watch: ['*'] })}` };

describe('parseRequestUrl', () => {
  it('reads an origin-form target as path and query, // included, and gives null for what is not a URL', () => {
    expect(parseRequestUrl('/v1?session=s')?.pathname).toBe('/v1');
    expect(parseRequestUrl('/v1?session=s')?.searchParams.get('session')).toBe('s');
    expect(parseRequestUrl('//')?.pathname).toBe('//');
    expect(parseRequestUrl('//evil.example/v1')?.pathname).toBe('//evil.example/v1');
    expect(parseRequestUrl('http://127.0.0.1/v1')?.pathname).toBe('/v1');
    expect(parseRequestUrl(undefined)?.pathname).toBe('/');
    for (const target of ['http://[', 'http://[::1/', '*', '%', '']) expect(parseRequestUrl(target)).toBeNull();
  });
});

describe('malformed request targets (in process)', () => {
  it('answer a plain GET and an upgrade to // with 404 and keep the server serving', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    servers.push(server);
    expect(await statusOf(server.port, plainGet('//'))).toBe(404);
    expect(await statusOf(server.port, upgrade('//'))).toBe(404);
    expect(await serves(server.httpUrl, server.url)).toBe(true);
  });

  it('answer a plain GET to // with 401 when auth is on and keep the server serving', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, auth: { secret: SECRET } });
    servers.push(server);
    expect(await statusOf(server.port, plainGet('//'))).toBe(401);
    expect(await statusOf(server.port, upgrade('//'))).toBe(404);
    expect(await serves(server.httpUrl, server.url, bearer)).toBe(true);
  });

  it('answer a target that is not a URL with 400, over HTTP and at the upgrade, with auth on or off', async () => {
    const open = await createLockServer({ port: 0, heartbeatInterval: 0 });
    const guarded = await createLockServer({ port: 0, heartbeatInterval: 0, auth: { secret: SECRET } });
    servers.push(open, guarded);
    for (const server of [open, guarded]) {
      for (const target of ['http://[', 'http://[::1/', '*']) {
        expect(await statusOf(server.port, plainGet(target))).toBe(400);
        expect(await statusOf(server.port, upgrade(target))).toBe(400);
      }
    }
    expect(await serves(open.httpUrl, open.url)).toBe(true);
    expect(await serves(guarded.httpUrl, guarded.url, bearer)).toBe(true);
  });

  it('answer targets the HTTP parser itself refuses (400 for a bare % or a space, 431 for one longer than the header limit) and go on serving', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    servers.push(server);
    for (const [target, status] of [['%', 400], ['/a b', 400], [`/${'a'.repeat(64 * 1024)}`, 431]] as const) {
      expect(await statusOf(server.port, plainGet(target))).toBe(status);
      expect(await statusOf(server.port, upgrade(target))).toBe(status);
    }
    expect(await serves(server.httpUrl, server.url)).toBe(true);
  });
});

describe('malformed request targets (lockwire serve process)', () => {
  for (const [what, args, headers] of [
    ['without auth', [], {}],
    ['with auth on', ['--auth-secret', SECRET], bearer],
  ] as const) {
    it(`keep serving ${what} after raw GET // and an upgrade to //`, async () => {
      const child = await startLockwireProcess({ heartbeat: 0, args });
      processes.push(child);
      const httpUrl = `http://127.0.0.1:${child.port}`;
      expect(await statusOf(child.port, plainGet('//'))).toBe(args.length === 0 ? 404 : 401);
      expect(await statusOf(child.port, upgrade('//'))).toBe(404);
      expect(await statusOf(child.port, plainGet('http://['))).toBe(400);
      expect(await statusOf(child.port, upgrade('http://['))).toBe(400);
      const outcome = await Promise.race([
        child.exited.then(({ code, signal }) => `exited ${String(code ?? signal)}`),
        serves(httpUrl, child.url, headers).then((ok) => (ok ? 'serving' : 'not serving')),
      ]);
      expect(outcome).toBe('serving');
    });
  }
});
