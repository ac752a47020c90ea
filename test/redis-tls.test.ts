import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore, type RedisStoreOptions } from '../server/src/redis/redis-store.js';
import { tlsRefusal } from '../server/src/redis/redis-tls.js';
import { RawClient } from './helpers/raw-client.js';
import { startNodesAt } from './helpers/redis-nodes.js';
import {
  startRedisCluster,
  startRedisServer,
  type RedisCluster,
  type RedisServer,
  type RedisServerTls,
} from './helpers/redis-server.js';
import { inProcessServes } from './helpers/serve-in-process.js';
import { createTestPki, type CertFiles, type TestPki } from './helpers/tls-certs.js';

/** Longest wait for anything here: a start that should fail fails well within it. */
const WAIT_MS = 5000;

/**
 * A start refused for want of a client certificate: Redis' TLS alert says so
 * when it reaches the client, and a connection cut without it is reported as
 * the likely cause (which of the two comes first is up to the network stack).
 */
const CLIENT_CERT_REFUSED =
  /^could not connect to Redis: (the TLS handshake with Redis failed \(.*alert certificate required|Redis closed the TLS connection as soon as it was made \(.+\): it may require a client certificate)/;

let pki: TestPki | undefined;
/** Serves TLS with the test CA's server certificate; any client may connect. */
let open: RedisServer | undefined;
/** The same, but requires a client certificate signed by the test CA. */
let mutual: RedisServer | undefined;

function ready<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is started in beforeAll`);
  return value;
}

function serverTls(authClients: boolean): RedisServerTls {
  const { ca, server, client } = ready(pki, 'the test PKI');
  return {
    certFile: server.certFile,
    keyFile: server.keyFile,
    caFile: ca.certFile,
    authClients,
    ca: ca.cert,
    clientCert: client.cert,
    clientKey: client.key,
  };
}

beforeAll(async () => {
  pki = createTestPki();
  [open, mutual] = await Promise.all([startRedisServer([], serverTls(false)), startRedisServer([], serverTls(true))]);
});
afterAll(async () => {
  await Promise.all([open?.stop(), mutual?.stop()]);
  pki?.remove();
});

const servers: LockServer[] = [];
const clients: RawClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

let runs = 0;
const namespace = () => `tls${process.pid}x${++runs}`;

async function connect(server: { readonly url: string }): Promise<RawClient> {
  const client = await RawClient.connect(server.url);
  clients.push(client);
  return client;
}

/** Rejects with what the start of a node on `store` failed with; fails the test when it starts or takes longer than `ms`. */
async function failedStart(store: RedisStoreOptions, ms = WAIT_MS): Promise<string> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore(store) }).then(
      (server) => {
        servers.push(server);
        return null;
      },
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    ),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === null) throw new Error('the node started');
  if (outcome === 'timeout') throw new Error(`the start neither failed nor succeeded within ${ms} ms`);
  expect(Date.now() - started).toBeLessThan(ms);
  return outcome;
}

/**
 * Runs `CONFIG SET` on the TLS Redis at `port`, with the test's client
 * certificate. It does not check the server's certificate: it is there to
 * replace one, also one a checking client refuses.
 */
async function configSet(port: number, config: Record<string, string>): Promise<void> {
  const { client } = ready(pki, 'the test PKI');
  const admin = createClient({
    url: `rediss://127.0.0.1:${port}`,
    socket: { tls: true, rejectUnauthorized: false, cert: client.cert, key: client.key, reconnectStrategy: false },
  });
  admin.on('error', () => {});
  await admin.connect();
  await admin.configSet(config).finally(() => admin.destroy());
}

/** Makes the Redis at `port` serve `cert` to every new connection, as a certificate replaced on a running Redis. */
const serveCertificate = (port: number, cert: CertFiles) =>
  configSet(port, { 'tls-cert-file': cert.certFile, 'tls-key-file': cert.keyFile });

/** A holder on one node releases; a waiter on the other is granted with a larger token. */
async function expectHandoff(first: { readonly url: string }, second: { readonly url: string }, key: string): Promise<void> {
  const holder = await connect(first);
  const waiter = await connect(second);
  const held = await holder.request({ op: 'acquire', key });
  expect(held).toMatchObject({ ok: true, acquired: true });
  waiter.send({ op: 'acquire', id: 'w', key });
  await waiter.next((m) => m.type === 'queued', { label: 'the waiter queued' });
  expect(await holder.request({ op: 'release', key })).toMatchObject({ released: true });
  const granted = await waiter.reply('w');
  expect(granted).toMatchObject({ ok: true, acquired: true });
  expect(granted.token as number).toBeGreaterThan(held.token as number);
}

describe('the Redis store over rediss://', () => {
  it('hands a lock from a holder on one node to a waiter on another, trusting the server through the private CA', async () => {
    const { ca } = ready(pki, 'the test PKI');
    const [a, b] = await startNodesAt([ready(open, 'redis').url, ready(open, 'redis').url], { namespace: namespace(), tls: { ca: ca.cert } }, servers);
    if (!a || !b) throw new Error('nodes');
    await expectHandoff(a, b, 'tls-room');
  });

  it('reaches a Redis that requires a client certificate with the certificate and key given, as Buffers', async () => {
    const { ca, client } = ready(pki, 'the test PKI');
    const tls = { ca: Buffer.from(ca.cert), cert: Buffer.from(client.cert), key: Buffer.from(client.key) };
    const url = ready(mutual, 'redis').url;
    const [a, b] = await startNodesAt([url, url], { namespace: namespace(), tls }, servers);
    if (!a || !b) throw new Error('nodes');
    await expectHandoff(a, b, 'mutual-room');
  });

  it('fails to start at once, naming the handshake, when Redis requires a client certificate and none is given', async () => {
    const { ca } = ready(pki, 'the test PKI');
    const message = await failedStart({ url: ready(mutual, 'redis').url, namespace: namespace(), tls: { ca: ca.cert } }, 1900);
    expect(message).toMatch(CLIENT_CERT_REFUSED);
  });

  it('fails to start at once with a store error when the server certificate is not trusted: no CA given, or another CA', async () => {
    const { otherCa } = ready(pki, 'the test PKI');
    const url = ready(open, 'redis').url;
    // Within 1.9 s: before the 2 s bound on a first connect, so the refusal itself ended the start.
    for (const tls of [undefined, { ca: otherCa.cert }]) {
      const message = await failedStart({ url, namespace: namespace(), ...(tls ? { tls } : {}) }, 1900);
      expect(message).toMatch(/could not connect to Redis: the Redis server's certificate is not trusted \(.+\): give the CA that signed it/);
    }
  });

  it('refuses TLS options with a redis:// URL, and a client certificate without its key, before connecting', async () => {
    const { ca, client } = ready(pki, 'the test PKI');
    const port = ready(open, 'redis').port;
    expect(await failedStart({ url: `redis://127.0.0.1:${port}`, tls: { ca: ca.cert } }, 1000)).toMatch(/is redis:\/\/, which connects without TLS/);
    expect(await failedStart({ url: `rediss://127.0.0.1:${port}`, tls: { cert: client.cert } }, 1000)).toMatch(/a client certificate needs its key/);
  });
});

const serves = inProcessServes({ waitMs: WAIT_MS });
afterEach(() => serves.stopAll());

describe('lockwire serve with --redis-tls-*', () => {
  it('reads the CA from LOCKWIRE_REDIS_TLS_CA and the client certificate and key from the config file, and serves over them', async () => {
    const { ca, client, dir } = ready(pki, 'the test PKI');
    const config = join(dir, 'lockwire.json');
    writeFileSync(config, JSON.stringify({ redisTlsCert: client.certFile, redisTlsKey: client.keyFile }));
    const url = ready(mutual, 'redis').url;
    const args = ['--store', 'redis', '--redis-url', url, '--config', config];
    const first = await serves.listen(args, { LOCKWIRE_REDIS_TLS_CA: ca.certFile });
    const second = await serves.listen([...args, '--redis-tls-ca', ca.certFile]);
    await expectHandoff({ url: first }, { url: second }, `cli-${namespace()}`);
  });

  it('exits 2 naming the setting for a certificate without its key, a key without its certificate, and TLS files with a redis:// URL', async () => {
    const { ca, client } = ready(pki, 'the test PKI');
    const rediss = ready(open, 'redis').url;
    const plain = rediss.replace('rediss:', 'redis:');
    const cases: Array<[string[], RegExp]> = [
      [['--redis-url', rediss, '--redis-tls-cert', client.certFile], /^lockwire: --redis-tls-cert ".*client\.crt": needs --redis-tls-key/m],
      [['--redis-url', rediss, '--redis-tls-key', client.keyFile], /^lockwire: --redis-tls-key ".*client\.key": needs --redis-tls-cert/m],
      [['--redis-url', plain, '--redis-tls-ca', ca.certFile], /^lockwire: --redis-tls-ca ".*ca\.crt": TLS files need a rediss:\/\/ URL/m],
    ];
    for (const [args, problem] of cases) {
      const result = await serves.run(['--store', 'redis', ...args]);
      expect(result.exit).toBe(2);
      expect(result.stderr).toMatch(problem);
    }
    const memory = await serves.run(['--redis-tls-ca', ca.certFile], {});
    expect(memory.exit).toBe(2);
    expect(memory.stderr).toMatch(/^lockwire: --redis-tls-ca ".*ca\.crt": not used by the memory store/m);
  });

  it('exits 2 naming the file when it cannot be read, holds no certificate, or the key is not the certificate\'s', async () => {
    const { ca, client, server, dir } = ready(pki, 'the test PKI');
    const url = ready(open, 'redis').url;
    const missing = join(dir, 'missing.crt');
    const cases: Array<[string[], RegExp]> = [
      [['--redis-tls-ca', missing], /^lockwire: --redis-tls-ca ".*missing\.crt": cannot be read: ENOENT/m],
      [['--redis-tls-ca', ca.keyFile], /^lockwire: --redis-tls-ca ".*ca\.key": holds no PEM certificate/m],
      [['--redis-tls-cert', client.keyFile, '--redis-tls-key', client.keyFile], /^lockwire: --redis-tls-cert ".*client\.key": is not a PEM certificate/m],
      [['--redis-tls-cert', client.certFile, '--redis-tls-key', server.keyFile], /^lockwire: --redis-tls-key ".*server\.key": is not the private key of the certificate/m],
    ];
    for (const [args, problem] of cases) {
      const result = await serves.run(['--store', 'redis', '--redis-url', url, ...args]);
      expect(result.exit).toBe(2);
      expect(result.stderr).toMatch(problem);
    }
  });

  it('exits 1 with the store error when the Redis server certificate is not trusted', async () => {
    const result = await serves.run(['--store', 'redis', '--redis-url', ready(open, 'redis').url]);
    expect(result.exit).toBe(1);
    expect(result.stderr).toMatch(/^lockwire: --redis-url "rediss:\/\/[^"]+": could not connect to Redis: the Redis server's certificate is not trusted/m);
  });
});

describe('the Redis store over rediss:// with a certificate the CA signed that does not fit', () => {
  /** Serves what each test sets with `serveCertificate`. */
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    redis = await startRedisServer([], serverTls(false));
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('fails to start at once saying the certificate expired (or is not yet valid), not asking for the CA that signed it', async () => {
    const { ca, expired } = ready(pki, 'the test PKI');
    const { url, port } = ready(redis, 'redis');
    await serveCertificate(port, expired);
    const message = await failedStart({ url, namespace: namespace(), tls: { ca: ca.cert } }, 1900);
    const outOfDate = "has expired or is not yet valid \\((.+)\\): renew it, or check this machine's clock";
    expect(message).toMatch(new RegExp(`^could not connect to Redis: the Redis server's certificate \\(or a CA certificate of its chain\\) ${outOfDate}$`));
    expect(message).toMatch(/certificate has expired/);
    expect(message).not.toMatch(/give the CA/);
    // openssl 3.0 cannot date a certificate in the future; Node reports one with this code.
    const notYet = Object.assign(new Error('certificate is not yet valid'), { code: 'CERT_NOT_YET_VALID' });
    expect(tlsRefusal(notYet)).toMatch(new RegExp(outOfDate));
  });

  it('fails to start at once naming the host of the URL when the certificate does not name it', async () => {
    const { ca, localhostOnly } = ready(pki, 'the test PKI');
    const { url, port } = ready(redis, 'redis');
    await serveCertificate(port, localhostOnly);
    const message = await failedStart({ url, namespace: namespace(), tls: { ca: ca.cert } }, 1900);
    expect(message).toMatch(/^could not connect to Redis: the Redis server's certificate does not name the host of the URL, 127\.0\.0\.1 \(.+\)$/);
  });
});

describe('the Redis Cluster store over rediss:// with certificates naming localhost only', () => {
  let cluster: RedisCluster | undefined;
  beforeAll(async () => {
    cluster = await startRedisCluster({ tls: serverTls(false) });
    const { localhostOnly } = ready(pki, 'the test PKI');
    for (const port of cluster.ports) await serveCertificate(port, localhostOnly);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('fails to start naming the announced node address the certificate does not name, not the URL host it does name', async () => {
    const { ca } = ready(pki, 'the test PKI');
    const [port] = ready(cluster, 'the cluster').ports;
    // The cluster announces its nodes as 127.0.0.1: the client reaches them there, not at localhost.
    const message = await failedStart({ url: `rediss://localhost:${port}`, cluster: true, namespace: namespace(), tls: { ca: ca.cert } }, 1900);
    expect(message).toMatch(
      /^could not connect to Redis: the certificate of the Redis Cluster node at 127\.0\.0\.1 does not name that address \(.+\): .*addresses the cluster announces.*cluster-announce-hostname with cluster-preferred-endpoint-type hostname/,
    );
    expect(message).not.toMatch(/host of the URL/);
  });

  it('starts and serves keys of every shard once the cluster announces its nodes by a host name the certificates name', async () => {
    const { ca } = ready(pki, 'the test PKI');
    const { ports } = ready(cluster, 'the cluster');
    const announce = (hostname: string, type: string) =>
      Promise.all(ports.map((port) => configSet(port, { 'cluster-announce-hostname': hostname, 'cluster-preferred-endpoint-type': type })));
    await announce('localhost', 'hostname');
    try {
      const url = `rediss://localhost:${ports[0]}`;
      const start = async () => {
        try {
          servers.push(await createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore({ url, cluster: true, namespace: namespace(), tls: { ca: ca.cert } }) }));
          return 'started';
        } catch (error) {
          return error instanceof Error ? error.message : String(error);
        }
      };
      // The nodes learn each other's host names over the cluster bus: a start before that is refused at once.
      await expect.poll(start, { timeout: 10_000, interval: 100 }).toBe('started');
      const node = servers.at(-1);
      if (!node) throw new Error('the node started');
      const holder = await connect(node);
      for (let i = 0; i < 12; i++) expect(await holder.request({ op: 'acquire', key: `k${i}` })).toMatchObject({ acquired: true });
    } finally {
      await announce('', 'ip');
    }
  });
});

describe('the Redis Cluster store over rediss://', () => {
  let cluster: RedisCluster | undefined;
  beforeAll(async () => {
    cluster = await startRedisCluster({ tls: serverTls(true) });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('reaches every discovered node with the CA and client certificate: keys on all shards are granted and handed off between nodes', async () => {
    const { ca, client } = ready(pki, 'the test PKI');
    const [p1, p2] = ready(cluster, 'the cluster').ports;
    const tls = { ca: ca.cert, cert: client.cert, key: client.key };
    // Each node is given one root node; the other primaries are discovered.
    const [a, b] = await startNodesAt([`rediss://127.0.0.1:${p1}`, `rediss://127.0.0.1:${p2}`], { cluster: true, namespace: namespace(), tls }, servers);
    if (!a || !b) throw new Error('nodes');
    const holder = await connect(a);
    // Twelve keys hash to slots of all three primaries.
    for (let i = 0; i < 12; i++) expect(await holder.request({ op: 'acquire', key: `k${i}` })).toMatchObject({ acquired: true });
    await holder.request({ op: 'release', key: 'k0' });
    await expectHandoff(a, b, 'k0');
  });

  it('fails to start at once naming the cause when a node is not trusted, or the cluster requires a client certificate not given', async () => {
    const { ca } = ready(pki, 'the test PKI');
    const url = `rediss://127.0.0.1:${ready(cluster, 'the cluster').ports[0]}`;
    expect(await failedStart({ url, cluster: true, namespace: namespace() }, 1900)).toMatch(
      /could not connect to Redis: the Redis server's certificate is not trusted/,
    );
    expect(await failedStart({ url, cluster: true, namespace: namespace(), tls: { ca: ca.cert } }, 1900)).toMatch(CLIENT_CERT_REFUSED);
  });
});
