import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { normaliseOrigin, parseJwks } from '../src/auth.js';
import { SECRET, connectWith, get, startServer, token, upgradeStatus } from './auth-harness.js';
import { sessionLog, upgradeHead, within } from './server-harness.js';

/** The public JWK of a new RSA key of `bits` (node:crypto: jose makes none under 2048 bits). */
function rsaPublicJwk(bits: number, extra: Partial<JWK> = {}): JWK {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return { ...publicKey.export({ format: 'jwk' }), ...extra };
}

/**
 * Writes a keep-alive GET of `path` (no `Connection: close` from the
 * client) and resolves with the head of the answer once the server ended
 * the connection; Node's keep-alive timeout (5 s) is past the bound.
 */
function lastAnswerHead(port: number, path: string, headers: Record<string, string> = {}): Promise<string> {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return within(
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: lockwire\r\n${lines.join('')}\r\n`));
      let text = '';
      socket.on('data', (chunk) => {
        text += String(chunk);
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(text.split('\r\n\r\n')[0] ?? ''));
    }),
    `the answer to GET ${path} and the end of its connection`,
  );
}

describe('authentication at the upgrade', () => {
  it('refuses an upgrade without a token with 401 and opens no session', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    expect(await upgradeStatus(server.url)).toBe(401);
    expect(server.sessionCount()).toBe(0);
  });

  it('names the Bearer scheme in WWW-Authenticate when it refuses an upgrade with 401, as the HTTP endpoints do', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    const lines = (await upgradeHead(server.port)).split('\r\n');
    expect(lines[0]).toBe('HTTP/1.1 401 Unauthorized');
    expect(lines.map((line) => line.toLowerCase())).toContain('www-authenticate: bearer');
    const http = await fetch(`${server.httpUrl}/v1/locks`);
    expect(http.status).toBe(401);
    expect(http.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('refuses a token with a bad signature, an expired one and one not yet valid', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    const forged = await token({ sub: 'ana', locks: ['*'] }, { secret: 'another secret entirely, same length..' });
    const expired = await token({ sub: 'ana', exp: Math.floor(clock.now() / 1000) - 10 });
    const early = await token({ sub: 'ana', nbf: Math.floor(clock.now() / 1000) + 600 });
    for (const bad of [forged, expired, early, 'not.a.jwt', '']) {
      expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${bad}` } })).toBe(401);
    }
    expect(server.sessionCount()).toBe(0);
  });

  it('refuses with 401 a token whose sub is missing, empty or not a string, at the upgrade and on /v1/locks', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    const anonymous = await token({ locks: ['*'], watch: ['*'] }, { now: clock.now() });
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${anonymous}` } })).toBe(401);
    expect((await get(server, '/v1/locks', { authorization: `Bearer ${anonymous}` })).status).toBe(401);
    for (const sub of [1, 0, '', null, true, ['ana'], { id: 'ana' }]) {
      const bad = await token({ sub, locks: ['*'], watch: ['*'] } as JWTPayload, { now: clock.now() });
      expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${bad}` } })).toBe(401);
      expect((await get(server, '/v1/locks', { authorization: `Bearer ${bad}` })).status).toBe(401);
    }
    expect(server.sessionCount()).toBe(0);
  });

  it('keeps a session from another user whose tokens carry numeric subs: the resume secret with a sub-less or numeric-sub token is refused 401, and the session stays for its own user', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({ auth: { secret: SECRET }, sessionGrace: 10_000, logger: sessions.logger });
    const as = async (claims: JWTPayload) => token({ locks: ['*'], ...claims }, { now: clock.now() });
    const owner = await connectWith(server.url, await as({ sub: '1' }));
    expect(await owner.client.request({ op: 'acquire', id: 1, key: 'account:1' })).toMatchObject({ acquired: true });
    owner.client.ws.terminate();
    await sessions.closed(1, 'the server to see the drop');
    // The resume secret travels in the URL and may leak; other users' valid tokens must not take the session.
    const query = `?session=${String(owner.welcome.session)}&resume=${String(owner.welcome.resume)}`;
    for (const other of [{ sub: 2 }, { sub: 1 }, {}]) {
      expect(await upgradeStatus(server.url + query, { headers: { authorization: `Bearer ${await as(other as JWTPayload)}` } })).toBe(401);
    }
    const resumed = await connectWith(server.url + query, await as({ sub: '1' }));
    expect(resumed.welcome).toMatchObject({ session: owner.welcome.session, resumed: true, held: [{ key: 'account:1' }] });
  });

  it('refuses with 401 a token whose fractional exp passed within the last second, at the upgrade and on /v1/locks', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    // RFC 7519 lets a NumericDate be fractional; this one passed 400 ms ago, in the same whole second as now.
    const exp = Math.floor(clock.now() / 1000) + 1.5;
    const ana = await token({ sub: 'ana', locks: ['*'], watch: ['*'], exp }, { now: clock.now() });
    const headers = { authorization: `Bearer ${ana}` };
    // Until that exp the token is valid.
    clock.set((exp - 0.1) * 1000);
    expect((await get(server, '/v1/locks', headers)).status).toBe(200);
    clock.set((exp + 0.4) * 1000);
    expect(await upgradeStatus(server.url, { headers })).toBe(401);
    expect((await get(server, '/v1/locks', headers)).status).toBe(401);
    expect(server.sessionCount()).toBe(0);
  });

  it('takes a token whose fractional nbf passed within the last second, and refuses one whose nbf is still ahead by less than a second', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    const whole = Math.floor(clock.now() / 1000) + 10;
    const nbf = whole + 0.5;
    const ana = await token({ sub: 'ana', locks: ['*'], watch: ['*'], nbf }, { now: clock.now() });
    const headers = { authorization: `Bearer ${ana}` };
    clock.set((nbf - 0.3) * 1000);
    expect(await upgradeStatus(server.url, { headers })).toBe(401);
    // 400 ms after nbf, in the same whole second: valid, as a fractional exp counts to the millisecond.
    clock.set((nbf + 0.4) * 1000);
    expect(await upgradeStatus(server.url, { headers })).toBe(101);
    expect((await get(server, '/v1/locks', headers)).status).toBe(200);
  });

  it('refuses a token signed with alg none', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsigned = `${encode({ alg: 'none' })}.${encode({ sub: 'ana', locks: ['*'] })}.`;
    expect(await upgradeStatus(`${server.url}?access_token=${unsigned}`)).toBe(401);
  });

  it('checks the audience and issuer when configured', async () => {
    const { server } = await startServer({ auth: { secret: SECRET, audience: 'locks', issuer: 'https://id.example' } });
    const right = await token({ sub: 'ana', aud: 'locks', iss: 'https://id.example' });
    const wrongAudience = await token({ sub: 'ana', aud: 'other', iss: 'https://id.example' });
    const noIssuer = await token({ sub: 'ana', aud: 'locks' });
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${wrongAudience}` } })).toBe(401);
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${noIssuer}` } })).toBe(401);
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${right}` } })).toBe(101);
  });

  it('accepts the token from the Authorization header or the access_token parameter and names the user', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    const ana = await token({ sub: 'ana', locks: ['*'] });
    const { welcome: byHeader } = await connectWith(server.url, ana);
    const { welcome: byQuery } = await connectWith(`${server.url}?access_token=${ana}`, null);
    expect(byHeader).toMatchObject({ type: 'welcome', user: 'ana' });
    expect(byQuery).toMatchObject({ type: 'welcome', user: 'ana' });
    expect(byQuery.session).not.toBe(byHeader.session);
  });

  it('verifies tokens against a JWKS of public keys', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
    const { server } = await startServer({ auth: { jwks: { keys: [jwk] } } });
    const signed = await new SignJWT({ sub: 'bo', locks: ['a'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setExpirationTime('1h')
      .sign(privateKey);
    const { welcome } = await connectWith(server.url, signed);
    expect(welcome).toMatchObject({ user: 'bo' });
    const hmac = await token({ sub: 'bo' });
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${hmac}` } })).toBe(401);
  });

  it('accepts a token without kid signed by either key of a JWKS holding two keys of its algorithm', async () => {
    const [older, newer, stranger] = await Promise.all([1, 2, 3].map(() => generateKeyPair('ES256')));
    if (!older || !newer || !stranger) throw new Error('key pairs not generated');
    const published = async (pair: CryptoKeyPair, kid: string) => ({ ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' });
    const { server, clock } = await startServer({
      auth: { jwks: { keys: [await published(older, 'older'), await published(newer, 'newer')] } },
    });
    const sign = (pair: CryptoKeyPair, exp = Math.floor(clock.now() / 1000) + 60) =>
      new SignJWT({ sub: 'bo', locks: ['*'] }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime(exp).sign(pair.privateKey);
    expect((await connectWith(server.url, await sign(older))).welcome).toMatchObject({ user: 'bo' });
    expect((await connectWith(server.url, await sign(newer))).welcome).toMatchObject({ user: 'bo' });
    const bearer = async (jwt: Promise<string>) => ({ headers: { authorization: `Bearer ${await jwt}` } });
    expect(await upgradeStatus(server.url, await bearer(sign(stranger)))).toBe(401);
    expect(await upgradeStatus(server.url, await bearer(sign(newer, Math.floor(clock.now() / 1000) - 10)))).toBe(401);
    expect(server.sessionCount()).toBe(2);
  });

  it('refuses a JWKS with an RSA key under 2048 bits when it is read, naming the key, since no token could be verified with it', async () => {
    const good = rsaPublicJwk(2048, { kid: 'current', alg: 'RS256' });
    const short = rsaPublicJwk(1024, { kid: 'legacy', alg: 'RS256', use: 'sig' });
    expect(() => parseJwks(JSON.stringify({ keys: [good, short] }))).toThrow(
      'keys[1] (kid "legacy"): an RSA key of 1024 bits: tokens are verified only with RSA keys of 2048 bits or more',
    );
    expect(() => parseJwks(JSON.stringify({ keys: [rsaPublicJwk(1024)] }))).toThrow(/^keys\[0\]: an RSA key of 1024 bits/);
    expect(parseJwks(JSON.stringify({ keys: [good] })).keys).toHaveLength(1);
  });

  it('accepts a token without kid that a later key of its algorithm verifies when an earlier one cannot be used', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const usable = { ...(await exportJWK(publicKey)), alg: 'RS256' };
    const { server, clock } = await startServer({ auth: { jwks: { keys: [rsaPublicJwk(1024, { alg: 'RS256' }), usable] } } });
    const signed = await new SignJWT({ sub: 'bo', locks: ['*'] })
      .setProtectedHeader({ alg: 'RS256' })
      .setExpirationTime(Math.floor(clock.now() / 1000) + 60)
      .sign(privateKey);
    expect((await connectWith(server.url, signed)).welcome).toMatchObject({ user: 'bo' });
  });

  it('puts no user in the welcome when auth is off and lets every session do everything', async () => {
    const { server } = await startServer();
    const { client, welcome } = await connectWith(server.url, null);
    expect(welcome).not.toHaveProperty('user');
    expect(await client.request({ op: 'acquire', id: 1, key: 'k', steal: true })).toMatchObject({ ok: true, acquired: true });
    expect(await client.request({ op: 'revoke', id: 2, key: 'k' })).toMatchObject({ ok: true, revoked: 1 });
  });

  it('refuses with createLockServer when both a secret and a JWKS are given', async () => {
    await expect(startServer({ auth: { secret: SECRET, jwks: { keys: [] } } })).rejects.toThrow(/either secret or jwks/);
  });

  it('refuses with createLockServer an empty secret and one of blanks only, which anyone could sign tokens with', async () => {
    await expect(startServer({ auth: { secret: '' } })).rejects.toThrow(/must not be empty/);
    await expect(startServer({ auth: { secret: ' \t\n ' } })).rejects.toThrow(/must not be blanks only/);
  });

  it('refuses with createLockServer an audience or an issuer given without a secret or a JWKS', async () => {
    await expect(startServer({ auth: { audience: 'locks' } })).rejects.toThrow(/need a secret or jwks/);
    await expect(startServer({ auth: { issuer: 'https://id.example' } })).rejects.toThrow(/need a secret or jwks/);
  });
});

describe('Origin allow-list', () => {
  it('refuses an Origin not on the list with 403 and accepts listed ones and clients without Origin', async () => {
    const { server } = await startServer({ allowOrigins: ['https://app.example'] });
    expect(await upgradeStatus(server.url, { origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus(server.url, { origin: 'https://app.example.evil' })).toBe(403);
    expect(await upgradeStatus(server.url, { origin: 'https://app.example' })).toBe(101);
    expect(await upgradeStatus(server.url)).toBe(101);
  });

  it('checks no Origin without a list, and allows any with an explicit *', async () => {
    const { server: open } = await startServer();
    expect(await upgradeStatus(open.url, { origin: 'https://anything.example' })).toBe(101);
    const { server: star } = await startServer({ allowOrigins: ['*'] });
    expect(await upgradeStatus(star.url, { origin: 'https://anything.example' })).toBe(101);
  });

  it('matches entries written with capitals, a default port or a trailing slash as the browser sends them', async () => {
    const { server } = await startServer({ allowOrigins: ['HTTPS://App.Example:443/', 'http://localhost:5173/'] });
    expect(await upgradeStatus(server.url, { origin: 'https://app.example' })).toBe(101);
    expect(await upgradeStatus(server.url, { origin: 'http://localhost:5173' })).toBe(101);
    expect(await upgradeStatus(server.url, { origin: 'http://localhost:5174' })).toBe(403);
    expect(normaliseOrigin(' null ')).toBe('null');
  });

  it('refuses to start with an allowed Origin that is not an origin', async () => {
    for (const entry of ['https://app.example/app', 'https://app.example/?x=1', 'app.example', 'file:///tmp/x']) {
      expect(() => normaliseOrigin(entry)).toThrow(TypeError);
    }
    await expect(startServer({ allowOrigins: ['https://app.example/app'] })).rejects.toThrow(/not an origin/);
  });

  it("lets the server's own pages connect while the list names only other sites: an Origin of the scheme and Host the browser reached the server by", async () => {
    const { server } = await startServer({ allowOrigins: ['https://app.example.com'] });
    // What a browser sends from the dashboard page at http://127.0.0.1:PORT/.
    const own = new URL(server.httpUrl).origin;
    expect(await upgradeStatus(server.url, { origin: own })).toBe(101);
    expect((await get(server, '/v1/locks', { origin: own })).status).toBe(200);
    expect(await upgradeStatus(server.url.replace('127.0.0.1', 'localhost'), { origin: `http://localhost:${server.port}` })).toBe(101);
    // Another port, or https reached over plain http, is another origin.
    expect(await upgradeStatus(server.url, { origin: `http://127.0.0.1:${server.port + 1}` })).toBe(403);
    expect(await upgradeStatus(server.url, { origin: own.replace('http:', 'https:') })).toBe(403);
    expect((await get(server, '/v1/locks', { origin: own.replace('http:', 'https:') })).status).toBe(403);
    // Behind a proxy that ends TLS and says so in X-Forwarded-Proto, the page's Origin is https.
    const proxied = { 'x-forwarded-proto': 'https' };
    expect(await upgradeStatus(server.url, { origin: own.replace('http:', 'https:'), headers: proxied })).toBe(101);
    expect(await upgradeStatus(server.url, { origin: own, headers: proxied })).toBe(403);
  });

  it("takes a page reached by a name for the server's own only with auth on, since without tokens a DNS-rebinding page would pass as one", async () => {
    const { server: open } = await startServer({ allowOrigins: ['https://app.example.com'] });
    const named = (port: number) => ({ origin: `http://locks.example:${port}`, headers: { host: `locks.example:${port}` } });
    expect(await upgradeStatus(open.url, named(open.port))).toBe(403);
    const { server: guarded, clock } = await startServer({ auth: { secret: SECRET }, allowOrigins: ['https://app.example.com'] });
    const authorization = `Bearer ${await token({ sub: 'ana' }, { now: clock.now() })}`;
    const { origin, headers } = named(guarded.port);
    expect(await upgradeStatus(guarded.url, { origin, headers: { ...headers, authorization } })).toBe(101);
    expect(await upgradeStatus(guarded.url, { origin: 'http://other.example', headers: { ...headers, authorization } })).toBe(403);
    expect(await upgradeStatus(guarded.url, { origin })).toBe(403);
  });

  it("takes for the server's own page one reached by any host name with auth on, a fully qualified name with its trailing dot or a service name with an underscore included", async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET }, allowOrigins: ['https://app.example.com'] });
    const authorization = `Bearer ${await token({ sub: 'ana' }, { now: clock.now() })}`;
    const port = server.port;
    const statuses: Record<string, number> = {};
    for (const host of [`locks.example.com:${port}`, `locks.example.com.:${port}`, `lock_server:${port}`]) {
      statuses[host] = await upgradeStatus(server.url, { origin: `http://${host}`, headers: { host, authorization } });
    }
    expect(statuses).toEqual({ [`locks.example.com:${port}`]: 101, [`locks.example.com.:${port}`]: 101, [`lock_server:${port}`]: 101 });
  });

  it('checks the Origin before the credentials', async () => {
    const { server } = await startServer({ auth: { secret: SECRET }, allowOrigins: ['https://app.example'] });
    const ana = await token({ sub: 'ana' });
    const headers = { authorization: `Bearer ${ana}` };
    expect(await upgradeStatus(server.url, { origin: 'https://evil.example', headers })).toBe(403);
    expect(await upgradeStatus(server.url, { origin: 'https://app.example', headers })).toBe(101);
  });
});

describe('HTTP endpoints under auth', () => {
  it('keeps /healthz open and asks /v1/locks and the dashboard for the same credentials', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    expect((await get(server, '/healthz')).status).toBe(200);
    expect((await get(server, '/v1/locks')).status).toBe(401);
    expect((await get(server, '/')).status).toBe(401);
    const bad = await token({ sub: 'ana', watch: ['*'] }, { secret: 'a different secret, unknown here...' });
    expect((await get(server, '/v1/locks', { authorization: `Bearer ${bad}` })).status).toBe(401);
    const good = await token({ sub: 'ana', watch: ['*'] });
    expect((await get(server, '/v1/locks', { authorization: `Bearer ${good}` })).status).toBe(200);
    expect((await get(server, `/v1/locks?access_token=${good}`)).status).toBe(200);
  });

  it('lists over HTTP only the keys the token may see', async () => {
    const { server } = await startServer({ auth: { secret: SECRET } });
    const { client } = await connectWith(server.url, await token({ sub: 'w', locks: ['*'] }));
    for (const [id, key] of ['doc:1', 'doc:2', 'img:1', 'secret'].entries()) {
      await client.request({ op: 'acquire', id, key });
    }
    const viewer = await token({ sub: 'v', watch: ['doc:*', 'secret'] });
    const { body } = await get(server, `/v1/locks?access_token=${viewer}`);
    expect((body as { locks: Array<{ key: string }> }).locks.map((lock) => lock.key)).toEqual(['doc:1', 'doc:2', 'secret']);
    const narrow = await get(server, `/v1/locks?prefix=doc%3A2&access_token=${viewer}`);
    expect((narrow.body as { locks: Array<{ key: string }> }).locks.map((lock) => lock.key)).toEqual(['doc:2']);
    const blind = await token({ sub: 'b' });
    expect(await get(server, `/v1/locks?access_token=${blind}`)).toMatchObject({ status: 200, body: { locks: [], truncated: false } });
  });

  it('refuses with Connection: close from the start of shutdown, and ends the connection, as every other answer then', async () => {
    const { server, clock } = await startServer({
      auth: { secret: SECRET },
      allowOrigins: ['https://app.example'],
      drainDelay: 60_000,
    });
    const closed = server.close();
    try {
      const unauthorized = await lastAnswerHead(server.port, '/metrics');
      expect(unauthorized).toMatch(/^HTTP\/1\.1 401 /);
      expect(unauthorized).toMatch(/\r\nconnection: close(\r\n|$)/i);
      const forbidden = await lastAnswerHead(server.port, '/v1/locks', { origin: 'https://evil.example' });
      expect(forbidden).toMatch(/^HTTP\/1\.1 403 /);
      expect(forbidden).toMatch(/\r\nconnection: close(\r\n|$)/i);
    } finally {
      clock.advance(60_000);
    }
    await within(closed, 'close() after the drain delay');
  });

  it('answers /v1/locks in full without auth', async () => {
    const { server } = await startServer();
    const { client } = await connectWith(server.url, null);
    await client.request({ op: 'acquire', id: 1, key: 'x' });
    expect((await get(server, '/v1/locks')).body).toMatchObject({ locks: [{ key: 'x' }] });
  });
});
