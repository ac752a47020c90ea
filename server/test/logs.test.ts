import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { RATE_ABUSE_MIN_FRAMES } from '../src/limits.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { SECRET, token, upgradeStatus } from './auth-harness.js';
import { resumeQuery } from './grace-scenarios.js';
import { RawClient, upgradeStatusLine, within } from './server-harness.js';
import { openSilentPeer, PING_FLOOD, ServerOpcode } from './silent-peer.js';

type LogLine = Record<string, unknown> & { msg?: unknown; level?: unknown };

/** Writes `request` on a fresh TCP connection to `port` and resolves with everything answered until the server closes it. */
function rawAnswer(port: number, request: string): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(request));
      let text = '';
      socket.on('data', (chunk) => (text += String(chunk)));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    }),
    'the upgrade answer',
  );
}

/** A pino logger writing JSON lines into memory, and a way to await a line. */
function captureLogs() {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  let wake: (() => void) | null = null;
  const logger = pino(
    { level: 'debug' },
    {
      write(text: string) {
        raw.push(text);
        lines.push(JSON.parse(text) as LogLine);
        wake?.();
      },
    },
  );
  const find = (match: (line: LogLine) => boolean) => lines.find(match);
  const next = (match: (line: LogLine) => boolean, what: string): Promise<LogLine> =>
    within(
      (async () => {
        for (;;) {
          const found = find(match);
          if (found) return found;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      })(),
      what,
    );
  return { logger, lines, raw, next };
}

const servers: LockServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: LockServerOptions) {
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, ...options });
  servers.push(server);
  return server;
}

describe('structured logs', () => {
  it('write one line per connection open and close, with the close code, locks released and duration', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    // The duration is read from the monotonic clock: here it stands still but for the jump below.
    const monotonic = { now: 1_000 };
    vi.spyOn(performance, 'now').mockImplementation(() => monotonic.now);
    const { client, welcome } = await RawClient.connect(server.url);
    const session = welcome['session'];
    const opened = await logs.next((l) => l.msg === 'connection opened' && l['session'] === session, 'open line');
    expect(opened).toMatchObject({ level: 30, remote: '127.0.0.1' });

    await client.request({ op: 'acquire', id: 1, key: 'a' });
    await client.request({ op: 'acquire', id: 2, key: 'b' });
    monotonic.now += 2_345.4;
    client.ws.close(4000, 'bye');
    const closed = await logs.next((l) => l.msg === 'connection closed' && l['session'] === session, 'close line');
    vi.restoreAllMocks();
    expect(closed).toMatchObject({
      level: 30,
      remote: '127.0.0.1',
      code: 4000,
      closedBy: 'peer',
      serverCode: null,
      locksReleased: 2,
      durationMs: 2_345,
    });
    expect(logs.lines.filter((l) => l.msg === 'connection opened' || l.msg === 'connection closed')).toHaveLength(2);
  });

  it('write one line per error reply with its code, op and session', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    const { client, welcome } = await RawClient.connect(server.url);
    await client.request({ op: 'release', id: 7, key: 'not-held' });
    client.send({ op: 'nope', id: 8 });
    await client.reply(8);
    const notHolder = await logs.next((l) => l['code'] === 'not_holder', 'not_holder line');
    expect(notHolder).toMatchObject({ msg: 'error reply', op: 'release', id: 7, session: welcome['session'] });
    const bad = await logs.next((l) => l['code'] === 'bad_request', 'bad_request line');
    expect(bad).toMatchObject({ msg: 'error reply', op: null, id: 8 });
    expect(logs.raw.join('')).not.toContain('not-held');
  });

  it('write one line per expiry, steal and revoke with the key, the session that lost it and the token', async () => {
    const clock = createManualClock();
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, clock });
    const a = await RawClient.connect(server.url);
    const b = await RawClient.connect(server.url);

    const held = await a.client.request({ op: 'acquire', id: 1, key: 'doc', holdTimeout: 1000 });
    clock.advance(1000);
    await a.client.next((f) => f.type === 'lost', 'lost');
    expect(await logs.next((l) => l['reason'] === 'expired', 'expiry line')).toMatchObject({
      msg: 'lock lost',
      key: 'doc',
      session: a.welcome['session'],
      token: held['token'],
    });

    const stolen = await a.client.request({ op: 'acquire', id: 2, key: 'doc' });
    await b.client.request({ op: 'acquire', id: 1, key: 'doc', steal: true });
    expect(await logs.next((l) => l['reason'] === 'stolen', 'steal line')).toMatchObject({
      key: 'doc',
      session: a.welcome['session'],
      token: stolen['token'],
    });

    await a.client.request({ op: 'revoke', id: 3, key: 'doc' });
    expect(await logs.next((l) => l['reason'] === 'revoked', 'revoke line')).toMatchObject({
      key: 'doc',
      session: b.welcome['session'],
    });
    await a.client.close();
    await b.client.close();
  });

  it('write an upgrade refused line with its status and reason for an upgrade refused at maxConnections, off the protocol path or while shutting down, and count each refusal by status', async () => {
    const logs = captureLogs();
    const clock = createManualClock();
    const server = await start({ logger: logs.logger, clock, drainDelay: 60_000, limits: { maxConnections: 1 } });
    const refusals = () =>
      logs.lines.filter((l) => l.msg === 'upgrade refused').map(({ level, url, status, reason }) => ({ level, url, status, reason }));
    const refusedCount = async (status: number) => {
      const line = (await server.metrics.scrape()).split('\n').find((l) => l.startsWith(`lockwire_upgrades_refused_total{status="${status}"} `));
      return Number(line?.split(' ')[1]);
    };
    expect(await refusedCount(503)).toBe(0);
    const { client } = await RawClient.connect(server.url);

    expect(await upgradeStatus(`${server.url}?probe=1`)).toBe(503);
    expect(await upgradeStatusLine(server.port, '/v2')).toBe('HTTP/1.1 404 Not Found');
    const closed = server.close();
    expect(await upgradeStatusLine(server.port)).toBe('HTTP/1.1 503 Service Unavailable');
    expect(refusals()).toEqual([
      { level: 20, url: '/v1?probe=1', status: 503, reason: 'maxConnections' },
      { level: 20, url: '/v2', status: 404, reason: 'not /v1' },
      { level: 20, url: '/v1', status: 503, reason: 'shutting down' },
    ]);
    expect({ 503: await refusedCount(503), 404: await refusedCount(404), 401: await refusedCount(401) }).toEqual({ 503: 2, 404: 1, 401: 0 });
    clock.advance(60_000);
    await within(closed, 'close() after the drain delay');
    await within(client.closed, 'the connection to close');
  });

  it('write an upgrade refused line at debug, and count it by status, for a handshake that ws itself refuses: a bad key or a missing version (400), a method but GET (405)', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    const refusedCount = async (status: number) => {
      const line = (await server.metrics.scrape()).split('\n').find((l) => l.startsWith(`lockwire_upgrades_refused_total{status="${status}"} `));
      return Number(line?.split(' ')[1]);
    };
    const handshake = (method: string, headers: string) =>
      `${method} /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}Content-Length: 0\r\n\r\n`;
    const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    expect(await upgradeStatusLine(server.port, '/v1', 'not-a-key')).toBe('HTTP/1.1 400 Bad Request');
    const versionless = await rawAnswer(server.port, handshake('GET', key));
    expect(versionless.split('\r\n')).toEqual(expect.arrayContaining(['HTTP/1.1 400 Bad Request', 'Sec-WebSocket-Version: 13, 8']));
    const posted = await rawAnswer(server.port, handshake('POST', `${key}Sec-WebSocket-Version: 13\r\n`));
    expect(posted.split('\r\n')[0]).toBe('HTTP/1.1 405 Method Not Allowed');
    const refusals = logs.lines.filter((l) => l.msg === 'upgrade refused').map(({ level, status, reason }) => ({ level, status, reason }));
    expect(refusals).toEqual([
      { level: 20, status: 400, reason: 'Missing or invalid Sec-WebSocket-Key header' },
      { level: 20, status: 400, reason: 'Missing or invalid Sec-WebSocket-Version header' },
      { level: 20, status: 405, reason: 'Invalid HTTP method' },
    ]);
    expect({ 400: await refusedCount(400), 405: await refusedCount(405) }).toEqual({ 400: 2, 405: 1 });
  });

  it('write the URL of a refused upgrade with the access_token value redacted, and never a credential', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, auth: { secret: SECRET } });
    const forged = await token({ sub: 'ana', locks: ['*'] }, { secret: 'another secret entirely, same length..' });
    const good = await token({ sub: 'ana', locks: ['*'] });
    expect(await upgradeStatus(`${server.url}?probe=1&access_token=${forged}`)).toBe(401);
    const refused = await logs.next((l) => l.msg === 'upgrade refused', 'the refusal line');
    expect(refused).toMatchObject({ level: 30, status: 401, url: '/v1?probe=1&access_token=REDACTED' });

    const { client } = await RawClient.connect(`${server.url}?access_token=${good}`);
    await client.request({ op: 'release', id: 1, key: 'x' });
    await client.close();
    await logs.next((l) => l.msg === 'connection closed', 'close line');
    await within(fetch(`${server.httpUrl}/v1/locks?access_token=${good}`), 'GET /v1/locks');
    await server.close();
    const all = logs.raw.join('');
    for (const credential of [forged, good, SECRET]) expect(all).not.toContain(credential);
  });
});

describe('the connection closed line', () => {
  /** The close fields of the `connection closed` line of `session` (the first, should the session have had two connections). */
  async function closedLine(logs: ReturnType<typeof captureLogs>, session: unknown) {
    const line = await logs.next((l) => l.msg === 'connection closed' && l['session'] === session, 'the connection closed line');
    return { code: line['code'], closedBy: line['closedBy'], serverCode: line['serverCode'] };
  }

  it('says the peer closed it, with no server code, when the client closes with 1000', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    const { client, welcome } = await RawClient.connect(server.url);
    client.ws.close(1000);
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1000, closedBy: 'peer', serverCode: null });
  });

  it('says the peer closed it, with code 1006 and no server code, when the client drops', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    const { client, welcome } = await RawClient.connect(server.url);
    client.ws.terminate();
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1006, closedBy: 'peer', serverCode: null });
  });

  it('says the server closed it with 1009 for a frame over maxPayload, whose code is 1006 however the client answers: ws reads nothing after a refused frame', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, limits: { maxPayload: 2048 } });
    const { client, welcome } = await RawClient.connect(server.url);
    client.send({ op: 'ping', id: 1, pad: 'y'.repeat(4096) });
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1009 });
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1006, closedBy: 'server', serverCode: 1009 });
  });

  it.each([
    ['a frame over maxPayload', 1009, RawSocket.json({ op: 'ping', id: 1, pad: 'y'.repeat(4096) })],
    ['a text frame that is not UTF-8', 1007, RawSocket.frame(ServerOpcode.Text, Buffer.from([0xff, 0xfe]))],
    // A client's frame must be masked (RFC 6455): this one, `{}`, is not.
    ['an unmasked frame', 1002, Buffer.from([0x81, 0x02, 0x7b, 0x7d])],
    ['rate-limit abuse', 1008, Buffer.concat(PING_FLOOD)],
  ])('says the server closed it with its code for %s, also once the unanswered close was cut (1006)', async (_what, code, frame) => {
    const logs = captureLogs();
    const clock = createManualClock();
    const server = await start({ logger: logs.logger, clock, limits: { maxPayload: 2048, rateLimit: 1, rateBurst: 1 } });
    const peer = await openSilentPeer(server.url);
    const session = (JSON.parse(peer.frames()[0]?.payload.toString() ?? '{}') as Record<string, unknown>)['session'];
    peer.write(frame);
    expect(await peer.closeFrame()).toBe(code);
    clock.advance(2000);
    expect(await closedLine(logs, session)).toEqual({ code: 1006, closedBy: 'server', serverCode: code });
  });

  it('says the server closed it with 1008 for rate-limit abuse from a client that answers the close', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, limits: { rateLimit: 1, rateBurst: 1 } });
    const { client, welcome } = await RawClient.connect(server.url);
    for (let id = 1; id <= 2 * RATE_ABUSE_MIN_FRAMES; id++) client.send({ op: 'ping', id });
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1008, closedBy: 'server', serverCode: 1008 });
  });

  it('says the server closed it with 1008 when the credentials expired', async () => {
    const logs = captureLogs();
    const clock = createManualClock(Date.now());
    const server = await start({ logger: logs.logger, clock, auth: { secret: SECRET } });
    const short = await token({ sub: 'ana', locks: ['*'] }, { now: clock.now(), ttlSeconds: 10 });
    const { welcome } = await RawClient.connect(server.url, { headers: { authorization: `Bearer ${short}` } });
    clock.advance(10_000);
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1008, closedBy: 'server', serverCode: 1008 });
  });

  it('says the server cut it, without a close frame, when it missed the heartbeat', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, heartbeatInterval: 50 });
    const { welcome } = await RawClient.connect(server.url, { autoPong: false });
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1006, closedBy: 'server', serverCode: null });
  });

  it('says the server closed it with 1001 at shutdown', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger });
    const { welcome } = await RawClient.connect(server.url);
    await within(server.close(), 'close()');
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 1001, closedBy: 'server', serverCode: 1001 });
  });

  it('says the server closed it with 4001 when a resume superseded it', async () => {
    const logs = captureLogs();
    const server = await start({ logger: logs.logger, sessionGrace: 60_000 });
    const { client: old, welcome } = await RawClient.connect(server.url);
    const { welcome: resumed } = await RawClient.connect(`${server.url}${resumeQuery(welcome)}`);
    expect(resumed).toMatchObject({ session: welcome['session'], resumed: true });
    expect(await within(old.closed, 'the superseded connection to close')).toMatchObject({ code: 4001 });
    expect(await closedLine(logs, welcome['session'])).toEqual({ code: 4001, closedBy: 'server', serverCode: 4001 });
  });
});
