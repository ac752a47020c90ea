import { afterEach, describe, expect, it } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { createLockMetrics, type LockMetrics } from '../src/metrics.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { SECRET, token } from './auth-harness.js';
import { useRedisStores } from './redis-harness.js';

// A `status` of a key outside the session's `watch` patterns is answered
// only when the session holds the key as of the read, which runs after the
// session's earlier requests: right behind its own granted acquire, sent in
// the same TCP write, it is answered; right behind its own release it is
// refused and shows nothing of who holds or waits for the key next. Each
// case runs several rounds on fresh keys, so a read that overtakes the
// request in front of it shows.

const ROUNDS = 10;

type Frame = Record<string, unknown>;

const holdersOf = (status: Frame | undefined) =>
  ((status?.holders as Array<{ session: string }> | undefined) ?? []).map((holder) => holder.session);

/** A session on a bare socket, so that several requests go in one TCP write. */
class Pipe {
  private nextId = 1;
  private constructor(
    readonly socket: RawSocket,
    readonly session: string,
  ) {}

  /** Opens a session with a token of `claims`, its welcome read; its socket is added to `opened`. */
  static async open(server: LockServer, claims: Record<string, unknown>, opened: RawSocket[]): Promise<Pipe> {
    const url = new URL(server.url);
    url.searchParams.set('access_token', await token(claims));
    const socket = await RawSocket.open(url.toString());
    opened.push(socket);
    const frames = await socket.until((fs) => fs.some((f) => f.type === 'welcome'), 'the welcome');
    return new Pipe(socket, String(frames.find((f) => f.type === 'welcome')?.session));
  }

  /** Every frame that answers request `id` (its reply, or an acquire's `queued` and then its reply). */
  answersTo(id: number): Frame[] {
    return this.socket.frames().filter((f) => (f.type === 'reply' || f.type === 'queued') && f.id === id);
  }

  /**
   * Sends `requests` in one TCP write and resolves with their first
   * answers, in order: each one's reply, or the `queued` of an acquire
   * that joined a queue.
   */
  async together(...requests: Frame[]): Promise<Array<Frame & { id: number }>> {
    const sent = requests.map((request) => ({ ...request, id: this.nextId++ }));
    this.socket.write(...sent.map((request) => RawSocket.json(request)));
    const first = (frames: Frame[], id: number) =>
      frames.find((f) => (f.type === 'reply' || f.type === 'queued') && f.id === id);
    const frames = await this.socket.until(
      (fs) => sent.every((request) => first(fs, request.id) !== undefined),
      `the answers to ${sent.map((request) => JSON.stringify(request)).join(', ')}`,
    );
    return sent.map((request) => ({ ...(first(frames, request.id) ?? { type: 'none' }), id: request.id }));
  }

  /** Resolves with the reply to request `id` once it came. */
  async reply(id: number): Promise<Frame> {
    const frames = await this.socket.until(
      (fs) => fs.some((f) => f.type === 'reply' && f.id === id),
      `the reply to request ${id}`,
    );
    return frames.find((f) => f.type === 'reply' && f.id === id) ?? {};
  }
}

function forbiddenCount(text: string): number {
  const name = 'lockwire_errors_total{code="forbidden"} ';
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? 0 : Number(line.slice(name.length));
}

/** A refusal of `status` of `key` and nothing else: no lock state rides along. */
const refusedStatus = (id: number, key: string) => ({
  type: 'reply',
  id,
  ok: false,
  error: { code: 'forbidden', message: expect.stringContaining(JSON.stringify(key)) },
});

/**
 * Registers, in the calling `describe` block, the cases against auth
 * servers that `make` creates; their sockets are cut, then the servers
 * closed, after each case.
 */
function holderStatus(make: (metrics: LockMetrics) => Promise<LockServer>): void {
  const locksOnly = { sub: 'ana', locks: ['doc:*'] };
  const servers: LockServer[] = [];
  const sockets: RawSocket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  const start = async (metrics: LockMetrics) => {
    const server = await make(metrics);
    servers.push(server);
    return server;
  };
  const open = (server: LockServer, claims: Record<string, unknown>) => Pipe.open(server, claims, sockets);

  it('answers a status sent in one write right behind the session\'s granted acquire of the key, without watch', async () => {
    const server = await start(createLockMetrics({ processMetrics: false }));
    const ana = await open(server, locksOnly);
    for (let round = 0; round < ROUNDS; round++) {
      const key = `doc:granted:${round}`;
      const [acquired, status] = await ana.together({ op: 'acquire', key }, { op: 'status', key });
      expect(acquired).toMatchObject({ ok: true, acquired: true });
      expect({ round, status }).toMatchObject({ round, status: { ok: true, locked: true, heldByYou: true } });
      expect(holdersOf(status)).toEqual([ana.session]);
    }
  });

  it('refuses a status sent in one write right behind the session\'s release of the key, leaking nothing of the next holder', async () => {
    const metrics = createLockMetrics({ processMetrics: false });
    const server = await start(metrics);
    const ana = await open(server, locksOnly);
    const ben = await open(server, { sub: 'ben', locks: ['doc:*'] });
    for (let round = 0; round < ROUNDS; round++) {
      const key = `doc:released:${round}`;
      const [acquired] = await ana.together({ op: 'acquire', key });
      expect(acquired).toMatchObject({ acquired: true });
      const [queued] = await ben.together({ op: 'acquire', key, meta: { note: `ben-private-${round}` } });
      expect(queued).toMatchObject({ type: 'queued' });
      const [released, status] = await ana.together({ op: 'release', key }, { op: 'status', key });
      expect(released).toMatchObject({ ok: true, released: true });
      expect({ round, status }).toEqual({ round, status: refusedStatus(status?.id ?? 0, key) });
      expect(ana.answersTo(status?.id ?? 0)).toHaveLength(1);
      // The release granted ben's queued acquire; ben gives it up before the next round.
      expect(await ben.reply(queued?.id ?? 0)).toMatchObject({ ok: true, acquired: true });
      expect((await ben.together({ op: 'release', key }))[0]).toMatchObject({ released: true });
    }
    const seen = JSON.stringify(ana.socket.frames());
    expect(seen).not.toContain(ben.session);
    expect(seen).not.toContain('ben-private');
    expect(forbiddenCount(await metrics.scrape())).toBe(ROUNDS);
  });

  it('refuses a status sent in one write right behind an acquire of the key that only queues', async () => {
    const server = await start(createLockMetrics({ processMetrics: false }));
    const ana = await open(server, locksOnly);
    const ben = await open(server, { sub: 'ben', locks: ['doc:*'] });
    for (let round = 0; round < ROUNDS; round++) {
      const key = `doc:queued:${round}`;
      expect((await ben.together({ op: 'acquire', key }))[0]).toMatchObject({ acquired: true });
      const [queued, status] = await ana.together({ op: 'acquire', key }, { op: 'status', key });
      expect(queued).toMatchObject({ type: 'queued' });
      expect({ round, status }).toEqual({ round, status: refusedStatus(status?.id ?? 0, key) });
      const [cancelled] = await ana.together({ op: 'cancel', target: queued?.id });
      expect(cancelled).toMatchObject({ ok: true, cancelled: true });
    }
    expect(JSON.stringify(ana.socket.frames())).not.toContain(ben.session);
  });

  it('answers a status right behind the release to a session whose watch patterns cover the key', async () => {
    const server = await start(createLockMetrics({ processMetrics: false }));
    const ana = await open(server, { ...locksOnly, watch: ['doc:*'] });
    const ben = await open(server, { sub: 'ben', locks: ['doc:*'] });
    for (let round = 0; round < ROUNDS; round++) {
      const key = `doc:watched:${round}`;
      await ana.together({ op: 'acquire', key });
      const [queued] = await ben.together({ op: 'acquire', key });
      expect(queued).toMatchObject({ type: 'queued' });
      const [released, status] = await ana.together({ op: 'release', key }, { op: 'status', key });
      expect(released).toMatchObject({ released: true });
      expect({ round, status }).toMatchObject({ round, status: { ok: true, locked: true, heldByYou: false } });
      expect(holdersOf(status)).toEqual([ben.session]);
      expect(await ben.reply(queued?.id ?? 0)).toMatchObject({ acquired: true });
      await ben.together({ op: 'release', key });
    }
  });
}

describe('status of a held key without watch, on the memory store', () => {
  const options: LockServerOptions = { port: 0, heartbeatInterval: 0, auth: { secret: SECRET } };
  holderStatus((metrics) => createLockServer({ ...options, metrics }));
});

describe('status of a held key without watch, on the Redis store', () => {
  const stores = useRedisStores('sh');
  holderStatus((metrics) => {
    const store = createRedisStore({ url: stores.redis.url, namespace: stores.namespace() });
    return createLockServer({ port: 0, heartbeatInterval: 0, auth: { secret: SECRET }, store, metrics });
  });
});
