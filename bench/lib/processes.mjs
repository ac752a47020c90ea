// Child processes of the benchmark: servers pinned to their own core, talked
// to over Node's IPC channel, and a private redis-server. Every child is
// stopped by its own PID.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((path) => existsSync(path)) ?? null;

/** Cores for the server side and for the load generator (the same core on a 1-core machine). */
export const CORES = { server: 0, load: cpus().length > 1 ? 1 : 0 };

/** True when processes can be pinned to cores. */
export const canPin = TASKSET !== null;

/** Pins this process (every thread) to the load generator's core. */
export function pinSelf() {
  if (!TASKSET) return false;
  return spawnSync(TASKSET, ['-a', '-p', '-c', String(CORES.load), String(process.pid)], { stdio: 'ignore' }).status === 0;
}

/**
 * The read and write system calls process `pid` made so far (every thread;
 * sockets included), from Linux's `/proc/<pid>/io`; null where that cannot be
 * read (another OS, or a process of another user).
 */
export function ioCalls(pid = process.pid) {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    const calls = { reads: field('syscr'), writes: field('syscw') };
    return Number.isNaN(calls.reads) || Number.isNaN(calls.writes) ? null : calls;
  } catch {
    return null;
  }
}

/** `command args` run on the server core when taskset is there. */
function pinned(command, args) {
  return TASKSET ? [TASKSET, ['-c', String(CORES.server), command, ...args]] : [command, args];
}

/** A free loopback port (bound and released at once). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `node [nodeArgs] script` on the server core with an IPC channel.
 * Resolves once the child sent `{ ready: true, ... }`, with `call(cmd, args)`
 * (a request answered by the child over IPC) and `stop()`.
 * @param {string} script
 * @param {{ env?: Record<string, string>, nodeArgs?: string[] }} [options]
 */
export async function startServerProcess(script, options = {}) {
  const [command, args] = pinned(process.execPath, [...(options.nodeArgs ?? []), script]);
  const child = spawn(command, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...options.env },
  });
  const calls = new Map();
  let nextCall = 1;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
    child.on('message', (message) => {
      if (message.ready) resolve(message);
      const call = calls.get(message.call);
      if (call) {
        calls.delete(message.call);
        if (message.error) call.reject(new Error(message.error));
        else call.resolve(message.result);
      }
    });
  });
  const info = await ready;
  return {
    pid: child.pid,
    info,
    /** Sends a command to the child and resolves its answer. */
    call(cmd, args = {}) {
      const call = nextCall++;
      return new Promise((resolve, reject) => {
        calls.set(call, { resolve, reject });
        child.send({ call, cmd, ...args });
      });
    },
    /** Asks the child to close and exit (so a CPU profile is written); kills it by PID after 10 s. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send({ call: 0, cmd: 'stop' });
      const cut = setTimeout(() => process.kill(child.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(cut);
    },
  };
}

/**
 * Runs `node [nodeArgs] script` to completion (not pinned: it measures
 * itself) and resolves the JSON it printed last on stdout.
 */
export function runJsonChild(script, nodeArgs = [], env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`${script} exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? ''));
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** Starts a private redis-server (no persistence) on the server core; `stop()` kills it by PID. */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'lockwire-bench-redis-'));
  const port = await freePort();
  const [command, args] = pinned('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  const child = spawn(command, args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; ; attempt++) {
    const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 500 } });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      client.destroy();
      break;
    } catch {
      // A client whose connect failed is already closed; destroying it again throws.
      if (client.isOpen) client.destroy();
      if (attempt > 200 || child.exitCode !== null) {
        await stop();
        throw new Error('redis-server did not start');
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return { url, port, pid: child.pid, stop };
}
