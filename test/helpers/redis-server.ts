import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';

const INSTALL_HINT = 'install it with: apt-get install -y redis-server';

/** Fails loudly when a Redis binary is missing: these suites never skip. */
function binary(name: 'redis-server' | 'redis-cli'): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/local/bin'])) {
    const path = join(dir, name);
    if (dir && existsSync(path)) return path;
  }
  throw new Error(`${name} is not installed; ${INSTALL_HINT}`);
}

/** A plain client of one Redis server (no cluster routing). */
export type RedisAdmin = ReturnType<typeof createClient>;

/** Runs `f` with a plain client of the Redis server on loopback `port`, closed after. */
export async function onPort<T>(port: number, f: (client: RedisAdmin) => Promise<T>): Promise<T> {
  return withRedis(`redis://127.0.0.1:${port}`, f);
}

/** Runs `f` with a plain client of the Redis server at `url`, closed after. */
export async function withRedis<T>(url: string, f: (client: RedisAdmin) => Promise<T>): Promise<T> {
  const client = createClient({ url });
  await client.connect();
  try {
    return await f(client);
  } finally {
    client.destroy();
  }
}

/** A free loopback port (bound and released at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** `redis://[:password@]127.0.0.1:port`. */
function loopbackUrl(port: number, password?: string): string {
  return `redis://${password === undefined ? '' : `:${encodeURIComponent(password)}@`}127.0.0.1:${port}`;
}

/**
 * TLS of a test `redis-server`: its certificate and key, the CA it trusts
 * for client certificates, and the client certificate it is pinged with.
 */
export interface RedisServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** `--tls-auth-clients`: require a client certificate signed by the CA. Default false. */
  readonly authClients?: boolean;
  /** PEM of the CA, and of the client certificate and key the helper itself connects with. */
  readonly ca: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** Serves TLS only, on `port` (`--port 0` closes the plain port). */
function tlsArgs(port: number, tls: RedisServerTls): string[] {
  return [
    '--port', '0', '--tls-port', String(port),
    '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile,
    '--tls-auth-clients', tls.authClients === true ? 'yes' : 'no',
  ];
}

/** `redis-cli` flags that reach a TLS test server. */
function tlsCliArgs(tls: RedisServerTls | undefined): string[] {
  if (tls === undefined) return [];
  return ['--tls', '--cacert', tls.caFile, '--cert', tls.certFile, '--key', tls.keyFile];
}

async function pingUntilReady(port: number, child: ChildProcess, password?: string, tls?: RedisServerTls, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const url = tls === undefined ? loopbackUrl(port, password) : loopbackUrl(port, password).replace(/^redis:/, 'rediss:');
  const tlsSocket = tls === undefined ? {} : { tls: true as const, ca: tls.ca, cert: tls.clientCert, key: tls.clientKey };
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited with code ${child.exitCode}`);
    const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 500, ...tlsSocket } });
    client.on('error', () => {});
    try {
      await client.connect();
      const pong = await client.ping();
      client.destroy();
      if (pong === 'PONG') return;
    } catch {
      // A client whose connect failed is already closed; destroying it again throws.
      if (client.isOpen) client.destroy();
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A `redis-server` this test started, on a loopback port, without persistence. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** Kills the process (SIGKILL) and waits for it to exit: every key is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty, as after a crash without persistence). */
  restart(): Promise<void>;
  /** Stops it and removes its directory; idempotent. */
  stop(): Promise<void>;
}

function launch(args: string[], dir: string): ChildProcess {
  const child = spawn(binary('redis-server'), args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.resume();
  return child;
}

async function killChild(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGKILL');
  await exited;
}

/**
 * Starts a `redis-server` on a free loopback port with `--save '' --appendonly no` in a temp dir;
 * with `tls`, it serves TLS only on that port and its `url` is `rediss://`.
 */
export async function startRedisServer(extraArgs: string[] = [], tls?: RedisServerTls): Promise<RedisServer> {
  binary('redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'lockwire-redis-'));
  const port = await freePort();
  const ports = tls === undefined ? ['--port', String(port)] : tlsArgs(port, tls);
  const args = [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs];
  let child: ChildProcess | null = launch(args, dir);
  await pingUntilReady(port, child, undefined, tls);
  let stopped = false;
  return {
    port,
    url: `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`,
    get pid() {
      return child?.pid ?? -1;
    },
    async kill() {
      await killChild(child);
      child = null;
    },
    async restart() {
      await killChild(child);
      child = launch(args, dir);
      await pingUntilReady(port, child, undefined, tls);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await killChild(child);
      child = null;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis Cluster of three primaries this test started on loopback ports. */
export interface RedisCluster {
  readonly ports: number[];
  /** The root node URLs, comma-separated, as `--redis-url` takes them in cluster mode (with the password, if any). */
  readonly url: string;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** `requirepass` (and `masterauth`) of every node: clients must AUTH with it. Default: none. */
  password?: string;
  /** Every node serves TLS only (`--tls-cluster yes`: the cluster bus too); the URLs are `rediss://`. Default: no TLS. */
  tls?: RedisServerTls;
}

/**
 * Starts three `redis-server --cluster-enabled yes` on free loopback ports
 * and joins them with `redis-cli --cluster create ... --cluster-replicas 0`.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const { password, tls } = options;
  const auth = [...(password === undefined ? [] : ['-a', password, '--no-auth-warning']), ...tlsCliArgs(tls)];
  const cli = binary('redis-cli');
  binary('redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'lockwire-cluster-'));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map((child) => killChild(child)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      ports.push(port);
      const args = [
        ...(tls === undefined ? ['--port', String(port)] : [...tlsArgs(port, tls), '--tls-cluster', 'yes']), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
        '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
        ...(password === undefined ? [] : ['--requirepass', password, '--masterauth', password]),
      ];
      const child = launch(args, dir);
      children.push(child);
      await pingUntilReady(port, child, password, tls);
    }
    const created = spawnSync(
      cli,
      [...auth, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    await waitForClusterOk(cli, ports, auth);
  } catch (error) {
    await stop();
    throw error;
  }
  const scheme = tls === undefined ? 'redis:' : 'rediss:';
  return { ports, url: ports.map((p) => loopbackUrl(p, password).replace(/^redis:/, scheme)).join(','), stop };
}

async function waitForClusterOk(cli: string, ports: number[], auth: string[]): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const states = ports.map((port) => spawnSync(cli, [...auth, '-p', String(port), 'cluster', 'info'], { encoding: 'utf8' }).stdout);
    if (states.every((s) => s.includes('cluster_state:ok'))) return;
    if (Date.now() > deadline) throw new Error(`the Redis Cluster did not reach cluster_state:ok: ${states.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
