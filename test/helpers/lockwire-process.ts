import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * The repository root, where `server/bin/lockwire.mjs` lives: the nearest
 * directory above this module that has it (this module also runs compiled,
 * from a cache directory inside the repository).
 */
export const repoRoot = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'server', 'bin', 'lockwire.mjs'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no server/bin/lockwire.mjs above ${from}`);
  }
}

/**
 * Compiles the server (and the protocol package it references) to `dist/`,
 * which `server/bin/lockwire.mjs` runs. Incremental: quick when nothing
 * changed. Throws with the compiler's output when it fails. For scripts run
 * outside vitest: under vitest, test/global-setup.ts has built everything
 * once before any test file starts, so test files do not call this.
 */
export function buildServer(): void {
  const built = spawnSync('npx', ['tsc', '-b', 'server'], { cwd: repoRoot, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`tsc -b server failed:\n${built.stdout}${built.stderr}`);
}

export interface LockwireProcessOptions {
  /** Port to listen on. Default 0 (a free one); pass the old port to restart in place. */
  port?: number;
  /** Heartbeat interval in ms (`--heartbeat`). Default: the server's. */
  heartbeat?: number;
  /** `memory` (default), or `redis` or `redis-cluster` with `redisUrl`. */
  store?: 'memory' | 'redis' | 'redis-cluster';
  redisUrl?: string;
  /** `--node-ttl` in ms, for the Redis store. */
  nodeTtl?: number;
  /** Default `warn`. */
  logLevel?: string;
  /** How long to wait for the URL line. Default 15000 ms. */
  startTimeoutMs?: number;
  /** Called with each line of stderr (the server's logs); default: dropped. */
  onLog?: (line: string) => void;
  /** More `serve` flags, e.g. `['--auth-secret', '...']`. */
  args?: readonly string[];
}

/** A `lockwire serve` running as its own OS process, signalled by PID. */
export interface LockwireProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Resolves with the exit code or signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, resolving once exited: a crash, with no goodbye to anyone. */
  kill(): Promise<void>;
  /** SIGTERM, resolving once exited: the server drains and exits 0. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGSTOP: the process stops running (and reading its sockets) until `cont()`. */
  pause(): void;
  /** SIGCONT. */
  cont(): void;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Starts `node server/bin/lockwire.mjs serve` (built by the vitest global
 * setup, or by `buildServer()` outside vitest) and resolves once it printed its URL. Rejects if it exits
 * first or prints nothing in time (and kills it). The caller must end it.
 */
export async function startLockwireProcess(options: LockwireProcessOptions = {}): Promise<LockwireProcess> {
  const args = ['server/bin/lockwire.mjs', 'serve', '--port', String(options.port ?? 0), '--log-level', options.logLevel ?? 'warn'];
  if (options.heartbeat !== undefined) args.push('--heartbeat', String(options.heartbeat));
  if (options.store === 'redis' || options.store === 'redis-cluster') {
    if (!options.redisUrl) throw new Error(`store ${options.store} needs redisUrl`);
    args.push('--store', options.store, '--redis-url', options.redisUrl);
    if (options.nodeTtl !== undefined) args.push('--node-ttl', String(options.nodeTtl));
  }
  args.push(...(options.args ?? []));
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const logs = createInterface({ input: child.stderr as NodeJS.ReadableStream });
  logs.on('line', (line) => options.onLog?.(line));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const timeoutMs = options.startTimeoutMs ?? 15_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    if (pid === undefined) throw new Error('lockwire serve could not be spawned');
    const url = await Promise.race([
      new Promise<string>((resolve) => {
        lines.on('line', (line) => {
          const match = /ws:\/\/\S+/.exec(line);
          if (match) resolve(match[0]);
        });
      }),
      exited.then(({ code, signal }) => {
        throw new Error(`lockwire serve exited (${String(code ?? signal)}) before printing its URL`);
      }),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`lockwire serve printed no URL within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    const signal = (name: NodeJS.Signals) => {
      if (isRunning(child)) process.kill(pid, name);
    };
    return {
      url,
      port: Number(new URL(url).port),
      pid,
      exited,
      async kill() {
        signal('SIGCONT');
        signal('SIGKILL');
        await exited;
      },
      async stop() {
        signal('SIGCONT');
        signal('SIGTERM');
        return exited;
      },
      pause: () => signal('SIGSTOP'),
      cont: () => signal('SIGCONT'),
    };
  } catch (error) {
    if (pid !== undefined && isRunning(child)) process.kill(pid, 'SIGKILL');
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
