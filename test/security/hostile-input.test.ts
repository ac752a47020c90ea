import { decodeClientMessage } from '@lockwire/protocol';
import { createLockServer, type LockServer, type Logger } from '@lockwire/server';
import { afterEach, describe, expect, it } from 'vitest';
import { SECRET, token, upgradeStatus } from '../../server/test/auth-harness.js';
import { RawClient } from '../../server/test/server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function capturingLogger() {
  const lines: string[] = [];
  const log = (obj: object, msg: string) => lines.push(`${msg} ${JSON.stringify(obj)}`);
  const logger: Logger = { debug: log, info: log, warn: log, error: log };
  return { logger, lines };
}

describe('hostile frames', () => {
  it('decodes meta nested too deeply to serialise as bad_request instead of throwing', () => {
    const nested = `{"op":"acquire","id":7,"key":"k","meta":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`;
    expect(decodeClientMessage(nested)).toMatchObject({ ok: false, id: 7, error: { code: 'bad_request' } });
  });

  it('answers deep nesting, huge numbers and prototype keys and keeps serving the connection', async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    servers.push(server);
    const { client } = await RawClient.connect(server.url);
    clients.push(client);
    const frames = [
      `{"op":"acquire","id":1,"key":"k","meta":${'{"a":'.repeat(6000)}1${'}'.repeat(6000)}}`,
      `{"op":"acquire","id":2,"key":"k","meta":{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`,
      '{"op":"acquire","id":3,"key":"k","holdTimeout":1e999}',
      '{"op":"ping","id":4,"__proto__":{"admin":true}}',
      '{"op":"acquire","id":5,"key":"__proto__","meta":{"__proto__":{"polluted":true}}}',
    ];
    for (const frame of frames) client.ws.send(frame);
    const replies = await Promise.all([1, 2, 3, 4, 5].map((id) => client.reply(id)));
    expect(replies.map((reply) => reply.ok)).toEqual([false, false, false, false, true]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const status = await client.request({ op: 'status', id: 6, key: '__proto__' });
    expect(status).toMatchObject({ locked: true, holders: [{ meta: { ['__proto__']: { polluted: true } } }] });
  });
});

describe('secrets in logs', () => {
  it('never logs a token or a resume secret, refused or accepted, in the header or the URL', async () => {
    const { logger, lines } = capturingLogger();
    const server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      logger,
      auth: { secret: SECRET },
      sessionGrace: 1000,
    });
    servers.push(server);
    const good = await token({ sub: 'ana', locks: ['*'] });
    const bad = await token({ sub: 'ana' }, { secret: 'a different secret, not the servers.' });
    expect(await upgradeStatus(`${server.url}?access_token=${bad}`)).toBe(401);
    expect(await upgradeStatus(server.url, { headers: { authorization: `Bearer ${bad}` } })).toBe(401);
    const { client, welcome } = await RawClient.connect(`${server.url}?access_token=${good}`);
    await client.request({ op: 'acquire', id: 1, key: 'k' });
    await client.close();
    const resumed = await RawClient.connect(
      `${server.url}?session=${String(welcome.session)}&resume=${String(welcome.resume)}&access_token=${good}`,
    );
    clients.push(resumed.client);
    expect(resumed.welcome).toMatchObject({ resumed: true });
    await fetch(`${server.httpUrl}/v1/locks?access_token=${good}`);
    expect(lines.length).toBeGreaterThan(3);
    const all = lines.join('\n');
    for (const secret of [good, bad, String(welcome.resume), String(resumed.welcome.resume), SECRET]) {
      expect(all).not.toContain(secret);
    }
  });

  it('never logs the resume secret of a resume refused at the upgrade', async () => {
    const { logger, lines } = capturingLogger();
    const server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      logger,
      sessionGrace: 10_000,
      allowOrigins: ['https://app.example'],
    });
    servers.push(server);
    const { client, welcome } = await RawClient.connect(server.url);
    clients.push(client);
    const secret = String(welcome.resume);
    const resume = `${server.url}?session=${String(welcome.session)}&resume=${secret}`;
    expect(await upgradeStatus(resume, { headers: { origin: 'https://evil.example' } })).toBe(403);
    const refused = lines.find((line) => line.startsWith('upgrade refused'));
    expect(refused).toContain(`session=${String(welcome.session)}&resume=REDACTED`);
    expect(lines.join('\n')).not.toContain(secret);
  });
});
