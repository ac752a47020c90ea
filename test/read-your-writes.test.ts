import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { RawClient, type Frame } from './helpers/raw-client.js';
import { RawSocket } from './helpers/raw-socket.js';
import { startRedisCluster, type RedisCluster } from './helpers/redis-server.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { useRedisStores } from '../server/test/redis-harness.js';

// A read (status, list, a watch's snapshot) sees the effects of the same
// session's requests sent before it, on every store, even when the client
// sends them in one TCP write and does not wait for the first reply. On the
// Redis store the read would otherwise reach Redis before the step of the
// request in front of it: that step first records its key in the node's key
// set (a round trip on a cluster), or waits for the answer of the request it
// cancels. Each case runs many rounds, each on a fresh key, so a read that
// overtakes shows in most of them.

const ROUNDS = 25;

type Request = Record<string, unknown> & { id: number };

const holdersOf = (status: unknown) =>
  ((status as { holders?: Array<{ session: string }> } | undefined)?.holders ?? []).map((h) => h.session);
const queueOf = (status: unknown) =>
  ((status as { queue?: Array<{ session: string }> } | undefined)?.queue ?? []).map((q) => q.session);
const listed = (reply: Frame | undefined, key: string) =>
  (reply?.locks as Array<{ key: string }> | undefined)?.find((lock) => lock.key === key);

/** Sessions a test opens, cut after it (hooks of the calling `describe` block). */
function useSessions() {
  const sockets: RawSocket[] = [];
  const clients: RawClient[] = [];
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.destroy();
    for (const client of clients.splice(0)) client.terminate();
  });
  let nextId = 1;
  return {
    /** A session on a bare socket, to write several frames at once, and its session id. */
    async pipelined(server: LockServer): Promise<{ socket: RawSocket; session: string }> {
      const socket = await RawSocket.open(server.url);
      sockets.push(socket);
      const frames = await socket.until((fs) => fs.some((f) => f.type === 'welcome'), 'the welcome');
      return { socket, session: String(frames.find((f) => f.type === 'welcome')?.session) };
    },
    /** Another session, to hold keys the pipelined one then queues for. */
    async other(server: LockServer): Promise<RawClient> {
      const client = await RawClient.connect(server.url);
      clients.push(client);
      return client;
    },
    /** The id `together` gives its next request. */
    get nextId(): number {
      return nextId;
    },
    /**
     * Sends `requests` in one TCP write and resolves with their answers, in
     * the same order: each one's reply, or the `queued` of an acquire that
     * joined a queue.
     */
    async together(socket: RawSocket, ...requests: Array<Record<string, unknown>>): Promise<Frame[]> {
      const sent: Request[] = requests.map((request) => ({ ...request, id: nextId++ }));
      socket.write(...sent.map((request) => RawSocket.json(request)));
      const answer = (frames: Array<Record<string, unknown>>, id: number) =>
        frames.find((f) => (f.type === 'reply' || f.type === 'queued') && f.id === id);
      const frames = await socket.until(
        (fs) => sent.every((request) => answer(fs, request.id) !== undefined),
        `the answers to ${sent.map((request) => JSON.stringify(request)).join(', ')}`,
      );
      return sent.map((request) => (answer(frames, request.id) ?? { type: 'none' }) as Frame);
    },
  };
}

/**
 * Registers, in the calling `describe` block, the cases against servers
 * that `start` makes (and closes itself).
 */
function readYourWrites(start: () => Promise<LockServer>): void {
  const sessions = useSessions();
  const { pipelined, other, together } = sessions;

  it('a status sent right behind an acquire shows the acquire granted', async () => {
    const { socket, session } = await pipelined(await start());
    for (let round = 0; round < ROUNDS; round++) {
      const key = `ryw:g:${round}`;
      const [acquired, status] = await together(socket, { op: 'acquire', key }, { op: 'status', key });
      expect(acquired).toMatchObject({ ok: true, acquired: true });
      expect({ round, holders: holdersOf(status), heldByYou: status?.heldByYou }).toEqual({ round, holders: [session], heldByYou: true });
    }
  });

  it('a status sent right behind an acquire that queues shows it in the queue', async () => {
    const server = await start();
    const { socket, session } = await pipelined(server);
    const holder = await other(server);
    for (let round = 0; round < ROUNDS; round++) {
      const key = `ryw:q:${round}`;
      expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      const [, status] = await together(socket, { op: 'acquire', key }, { op: 'status', key });
      expect({ round, queue: queueOf(status) }).toEqual({ round, queue: [session] });
    }
  });

  it('a list sent right behind an acquire lists the key, held or queued for', async () => {
    const server = await start();
    const { socket, session } = await pipelined(server);
    const holder = await other(server);
    for (let round = 0; round < ROUNDS; round++) {
      const granted = `ryw:lg:${round}`;
      const [, list] = await together(socket, { op: 'acquire', key: granted }, { op: 'list', prefix: granted });
      expect({ round, holders: holdersOf(listed(list, granted)) }).toEqual({ round, holders: [session] });
      const queued = `ryw:lq:${round}`;
      expect(await holder.request({ op: 'acquire', key: queued })).toMatchObject({ acquired: true });
      const [, both] = await together(socket, { op: 'acquire', key: queued }, { op: 'list', prefix: 'ryw:lq:' });
      expect({ round, queue: queueOf(listed(both, queued)) }).toEqual({ round, queue: [session] });
    }
  });

  it('a watch sent right behind an acquire has the acquire in its snapshot', async () => {
    // On Redis a snapshot also takes in the keys of events heard while it is read; the case of a
    // step whose events come only after the snapshot is below.
    const { socket, session } = await pipelined(await start());
    for (let round = 0; round < ROUNDS; round++) {
      const key = `ryw:w:${round}`;
      const [, watch] = await together(socket, { op: 'acquire', key }, { op: 'watch', prefix: key });
      expect({ round, holders: holdersOf(listed(watch, key)) }).toEqual({ round, holders: [session] });
      await together(socket, { op: 'unwatch', prefix: key });
    }
  });

  it('a status sent right behind a release or a cancel shows the lock given up', async () => {
    const server = await start();
    const { socket } = await pipelined(server);
    const holder = await other(server);
    for (let round = 0; round < ROUNDS; round++) {
      const key = `ryw:r:${round}`;
      await together(socket, { op: 'acquire', key });
      const [released, status] = await together(socket, { op: 'release', key }, { op: 'status', key });
      expect(released).toMatchObject({ ok: true, released: true });
      expect({ round, locked: status?.locked }).toEqual({ round, locked: false });
      // Queued behind another session's hold, then cancelled: the status shows the queue without it.
      expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      const acquire = sessions.nextId;
      expect((await together(socket, { op: 'acquire', key }))[0]).toMatchObject({ type: 'queued' });
      const [cancelled, after] = await together(socket, { op: 'cancel', target: acquire }, { op: 'status', key });
      expect(cancelled).toMatchObject({ ok: true, cancelled: true });
      expect({ round, queue: queueOf(after), holders: holdersOf(after) }).toEqual({ round, queue: [], holders: [holder.session] });
      expect(await holder.request({ op: 'release', key })).toMatchObject({ released: true });
    }
  });

  it('an acquire sent right behind the cancel of its key\'s queued acquire queues again', async () => {
    const server = await start();
    const { socket, session } = await pipelined(server);
    const holder = await other(server);
    for (let round = 0; round < ROUNDS; round++) {
      const key = `ryw:c:${round}`;
      expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      const first = sessions.nextId;
      expect((await together(socket, { op: 'acquire', key }))[0]).toMatchObject({ type: 'queued' });
      const [cancelled, again, status] = await together(
        socket,
        { op: 'cancel', target: first },
        { op: 'acquire', key },
        { op: 'status', key },
      );
      expect({ round, cancelled: cancelled?.cancelled, again: again?.type }).toEqual({ round, cancelled: true, again: 'queued' });
      expect({ round, queue: queueOf(status) }).toEqual({ round, queue: [session] });
      expect(await holder.request({ op: 'release', key })).toMatchObject({ released: true });
      // The holder's release grants the queued acquire; it is given up before the next round.
      await together(socket, { op: 'release', key });
    }
  });
}

describe('read your writes on the memory store', () => {
  const servers: LockServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  readYourWrites(async () => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0 });
    servers.push(server);
    return server;
  });
});

describe('read your writes on the Redis store', () => {
  const stores = useRedisStores('ryw');
  const servers: LockServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  const node = async (url: string, namespace: string) => {
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore({ url, namespace }) });
    servers.push(server);
    return server;
  };
  readYourWrites(() => node(stores.redis.url, stores.namespace()));

  const { pipelined, other, together } = useSessions();
  it('a watch sent right behind an acquire has it in its snapshot when the step waits for a late broadcast of the key', async () => {
    // The acquire's step on a key new to this node waits for the broadcasts of the key's earlier
    // steps on another node, which reach this node late: its events come only after a snapshot
    // that did not wait for the step.
    const namespace = stores.namespace();
    const proxy = await stores.proxy();
    const near = await node(proxy.url, namespace);
    const far = await node(stores.redis.url, namespace);
    const { socket, session } = await pipelined(near);
    const elsewhere = await other(far);
    // A watch on this node, so that it follows the order of the keys' steps.
    const watcher = await other(near);
    expect(await watcher.request({ op: 'watch', prefix: 'ryw:late:' })).toMatchObject({ ok: true });
    for (let round = 0; round < 5; round++) {
      const key = `ryw:late:${round}`;
      proxy.delay(0);
      expect(await elsewhere.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      expect(await elsewhere.request({ op: 'release', key })).toMatchObject({ released: true });
      await watcher.nextEvent(key, 'released');
      proxy.delay(200);
      expect(await elsewhere.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      expect(await elsewhere.request({ op: 'release', key })).toMatchObject({ released: true });
      const [acquired, watch] = await together(socket, { op: 'acquire', key }, { op: 'watch', prefix: key });
      expect(acquired).toMatchObject({ acquired: true });
      expect({ round, holders: holdersOf(listed(watch, key)) }).toEqual({ round, holders: [session] });
      await together(socket, { op: 'release', key }, { op: 'unwatch', prefix: key });
    }
  });
});

describe('read your writes on the Redis store on a Redis Cluster', () => {
  // Across shards a step waits for the reply of the SADD that records its key, so a read overtakes it by a round trip.
  let cluster: RedisCluster | undefined;
  const servers: LockServer[] = [];
  let run = 0;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  readYourWrites(async () => {
    if (!cluster) throw new Error('the Redis Cluster is not started');
    const store = createRedisStore({ url: cluster.url, cluster: true, namespace: `rywc${process.pid}x${++run}` });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    return server;
  });
});
