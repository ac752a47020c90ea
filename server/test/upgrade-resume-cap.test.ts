import { afterEach, describe, expect, it } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { connectWith, SECRET, startServer, token, upgradeStatus } from './auth-harness.js';
import { gatedStore } from './resume-harness.js';
import { sessionLog, within, type Frame } from './server-harness.js';
import { connectionsGauge, openSilentPeer, ServerOpcode, type SilentPeer } from './silent-peer.js';

/** Opens the store gates a failed test left shut, so its resume and server can end. */
const gates: Array<() => void> = [];
afterEach(() => {
  for (const open of gates.splice(0)) open();
});

/** The query string that resumes the session of `welcome`. */
function resumeQuery(welcome: Frame, secret: unknown = welcome.resume): string {
  return `?session=${encodeURIComponent(String(welcome.session))}&resume=${encodeURIComponent(String(secret))}`;
}

/** The welcome a silent peer was sent first. */
function welcomeOf(peer: SilentPeer): Frame {
  const text = peer.frames().find((frame) => frame.opcode === ServerOpcode.Text);
  if (!text) throw new Error('the silent peer has no welcome');
  return JSON.parse(text.payload.toString()) as Frame;
}

describe('a resume at maxConnections', () => {
  it('takes over a live connection the server still counts (half-open), which is closed with 4001 and cut, keeping the cap for others', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({ sessionGrace: 5000, limits: { maxConnections: 1 }, logger: sessions.logger });
    const old = await openSilentPeer(server.url);
    old.write(RawSocket.json({ op: 'acquire', id: 1, key: 'k' }));
    const grant = await old.reply(1);
    expect(grant).toMatchObject({ ok: true, acquired: true });
    const welcome = welcomeOf(old);

    const resumed = await connectWith(server.url + resumeQuery(welcome), null);
    expect(resumed.welcome).toMatchObject({ session: welcome.session, resumed: true, held: [{ key: 'k', token: grant.token }] });
    expect(await old.closeFrame()).toBe(4001);
    expect(await resumed.client.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ ok: true, released: true });

    // The superseded socket counts until it is cut; the resumed one keeps the server at its cap.
    clock.advance(2000);
    await old.cut();
    await sessions.closed(1, 'the superseded connection to close');
    expect(await upgradeStatus(server.url)).toBe(503);
  });

  it('refuses with 503 a resume with a wrong secret or of a session that is not live, and leaves the live connection open', async () => {
    const { server } = await startServer({ sessionGrace: 5000, limits: { maxConnections: 1 } });
    const live = await connectWith(server.url, null);
    expect(await upgradeStatus(server.url + resumeQuery(live.welcome, 'wrong'))).toBe(503);
    expect(await upgradeStatus(server.url + resumeQuery({ ...live.welcome, session: 'not-a-session' }))).toBe(503);
    expect(await upgradeStatus(`${server.url}?session=${String(live.welcome.session)}`)).toBe(503);
    expect(await live.client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
  });

  it('refuses with 503 a resume of a live session without session grace', async () => {
    const { server } = await startServer({ sessionGrace: 0, limits: { maxConnections: 1 } });
    const live = await connectWith(server.url, null);
    expect(await upgradeStatus(server.url + resumeQuery(live.welcome, 'anything'))).toBe(503);
    expect(await live.client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
  });

  it('checks the credentials as on any resume: another user is refused 503, no token 401, the same user takes over', async () => {
    const { server, clock } = await startServer({ auth: { secret: SECRET }, sessionGrace: 5000, limits: { maxConnections: 1 } });
    const ana = await token({ sub: 'ana', locks: ['*'] }, { now: clock.now() });
    const bo = await token({ sub: 'bo', locks: ['*'] }, { now: clock.now() });
    const live = await connectWith(server.url, ana);
    const query = resumeQuery(live.welcome);
    expect(await upgradeStatus(server.url + query, { headers: { authorization: `Bearer ${bo}` } })).toBe(503);
    expect(await upgradeStatus(server.url + query)).toBe(401);
    expect(await live.client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    const resumed = await connectWith(server.url + query, ana);
    expect(resumed.welcome).toMatchObject({ session: live.welcome.session, resumed: true });
    expect((await within(live.client.closed, 'the superseded connection to close')).code).toBe(4001);
  });

  it('admits one of two resumes of the same live session sent together and refuses the other with 503', async () => {
    const { server } = await startServer({ sessionGrace: 5000, limits: { maxConnections: 1 } });
    const live = await connectWith(server.url, null);
    const url = server.url + resumeQuery(live.welcome);
    const statuses = await Promise.all([upgradeStatus(url), upgradeStatus(url)]);
    expect(statuses.sort()).toEqual([101, 503]);
  });

  it('resumes of one session in a row, each old peer silent, keep open sockets at maxConnections + 1: one sent while the superseded socket still closes is refused 503, and the next is let in once that socket is cut', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({ sessionGrace: 5000, limits: { maxConnections: 1 }, logger: sessions.logger });
    let peer = await openSilentPeer(server.url);
    for (let round = 1; round <= 10; round++) {
      const next = await openSilentPeer(server.url + resumeQuery(welcomeOf(peer)));
      expect(await peer.closeFrame()).toBe(4001);
      // The old socket answers nothing: it counts for its whole close handshake.
      expect(await upgradeStatus(server.url + resumeQuery(welcomeOf(next)))).toBe(503);
      expect(await connectionsGauge(server.httpUrl)).toBe(2);
      clock.advance(2000);
      await peer.cut();
      await sessions.closed(round, 'the superseded connection to close');
      peer = next;
    }
    expect(await connectionsGauge(server.httpUrl)).toBe(1);
    expect(peer.isCut()).toBe(false);
  });

  it('refuses with 503 a resume of another live session while one let in at the limit is being checked, and lets it in once the superseded connection closed', async () => {
    const gated = gatedStore(gates);
    const sessions = sessionLog();
    const { server } = await startServer({
      clock: gated.clock,
      store: gated.store,
      sessionGrace: 60_000,
      limits: { maxConnections: 2 },
      logger: sessions.logger,
    });
    const holder = await connectWith(server.url, null);
    expect(await holder.client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    const other = await connectWith(server.url, null);

    // The holder's resume reads what its session holds: held there, it is an upgrade in progress.
    gated.hold();
    const resuming = connectWith(server.url + resumeQuery(holder.welcome), null);
    try {
      await within(gated.reading, 'the resume to read the store');
      expect(await upgradeStatus(server.url + resumeQuery(other.welcome))).toBe(503);
    } finally {
      gated.release();
    }
    const resumed = await resuming;
    expect(resumed.welcome).toMatchObject({ session: holder.welcome.session, resumed: true, held: [{ key: 'k' }] });
    expect((await within(holder.client.closed, 'the superseded connection to close')).code).toBe(4001);
    await sessions.closed(1, 'the server to see the superseded connection closed');

    expect(await upgradeStatus(server.url + resumeQuery(other.welcome))).toBe(101);
    expect((await within(other.client.closed, 'the other superseded connection to close')).code).toBe(4001);
  });
});
