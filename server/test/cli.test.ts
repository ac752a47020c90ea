import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { main, type CliIo } from '../src/cli.js';
import { defaultsLayer, envLayer, flagLayer, resolveConfig } from '../src/config.js';
import { RawClient, within } from './server-harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = fileURLToPath(new URL('../bin/lockwire.mjs', import.meta.url));
const children: ChildProcess[] = [];
const listeners: Server[] = [];
const accepted: Socket[] = [];
const dir = mkdtempSync(join(tmpdir(), 'lockwire-cli-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const socket of accepted.splice(0)) socket.destroy();
  for (const listener of listeners.splice(0)) listener.close();
});

/**
 * A loopback server that takes one connection and never says a word on it:
 * a paused server, or another service on the port. With `upgrade` it first
 * completes the WebSocket handshake (101), then sends nothing, not even an
 * answer to a close frame. Resolves its URL and the server side of the
 * connection, once a client connected.
 */
async function silentServer(upgrade: boolean): Promise<{ url: string; connection: Promise<Socket> }> {
  let accept: (socket: Socket) => void = () => undefined;
  const connection = new Promise<Socket>((resolve) => {
    accept = (socket) => {
      accepted.push(socket);
      // Reads (and drops) what arrives, so the client's FIN is seen.
      socket.resume();
      resolve(socket);
    };
  });
  let listener: Server;
  if (upgrade) {
    const http = createHttpServer();
    http.on('upgrade', (request, socket: Socket) => {
      const key = String(request.headers['sec-websocket-key']);
      const acceptKey = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey}\r\n\r\n`);
      accept(socket);
    });
    listener = http;
  } else {
    listener = createNetServer((socket) => accept(socket));
  }
  listeners.push(listener);
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/v1`, connection };
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk) => {
    out += String(chunk);
  });
  child.stderr?.on('data', (chunk) => {
    err += String(chunk);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Waits for the line announcing the WebSocket URL and returns the URL. */
async function listeningUrl(proc: Run): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const match = /ws:\/\/[^\s]+\/v1/.exec(proc.stdout());
        if (match) resolve(match[0]);
      };
      proc.child.stdout?.on('data', check);
      void proc.exited.then((code) => reject(new Error(`exited ${code}: ${proc.stderr()}`)));
      check();
    }),
    'the listening line',
    10_000,
  );
}

function fakeIo(env: Record<string, string> = {}) {
  const written = { stdout: '', stderr: '' };
  const io: CliIo = {
    stdout: { write: (text: string) => (written.stdout += text) },
    stderr: { write: (text: string) => (written.stderr += text) },
    env,
    onStopSignal: () => () => {},
  };
  return { io, written };
}

describe('lockwire serve (process)', () => {
  it('prints one line with the real URL on stdout, serves, and exits 0 after draining on SIGTERM', async () => {
    const proc = run(['serve', '--port', '0', '--max-locks-per-session', '6'], { LOCKWIRE_MAX_LOCKS_PER_SESSION: '5' });
    const url = await listeningUrl(proc);
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(url).not.toContain(':0/');
    const { client, welcome } = await RawClient.connect(url);
    expect(welcome).toMatchObject({ type: 'welcome', limits: { maxLocksPerSession: 6 } });
    expect(await client.request({ op: 'acquire', id: 1, key: 'job' })).toMatchObject({ acquired: true });
    proc.child.kill('SIGTERM');
    expect(await within(client.closed, 'the drain close')).toMatchObject({ code: 1001 });
    expect(await within(proc.exited, 'the exit', 10_000)).toBe(0);
    expect(proc.stdout().trim().split('\n')).toEqual([`lockwire listening on ${url}`]);
  });

  it('takes an empty --config as not given, so the LOCKWIRE_CONFIG file and its auth secret still apply', async () => {
    const file = join(dir, 'secret.json');
    writeFileSync(file, JSON.stringify({ authSecret: 'a-secret-from-the-config-file-of-32-bytes' }));
    for (const empty of [['--config='], ['--config', '']]) {
      const proc = run(['serve', '--port', '0', '--log-level', 'warn', ...empty], { LOCKWIRE_CONFIG: file });
      const url = await listeningUrl(proc);
      // With the file's secret in force, a request without a token is refused.
      const response = await fetch(`${url.replace(/^ws/, 'http')}/locks`);
      expect(response.status).toBe(401);
      proc.child.kill('SIGTERM');
      expect(await within(proc.exited, 'the exit', 10_000)).toBe(0);
    }
  });

  it('exits 2 with the usage and the problem on stderr for an unknown flag', async () => {
    const proc = run(['serve', '--port', '0', '--colour', 'red']);
    expect(await within(proc.exited, 'the exit', 10_000)).toBe(2);
    expect(proc.stderr()).toContain("'--colour'");
    expect(proc.stderr()).toContain('Usage: lockwire serve');
    expect(proc.stdout()).toBe('');
  });
});

describe('lockwire (in process)', () => {
  it('prints the usage and returns 0 for --help, at the top and for serve', async () => {
    const top = fakeIo();
    expect(await main(['--help'], top.io)).toBe(0);
    expect(top.written.stdout).toContain('Usage: lockwire <command>');
    const serve = fakeIo();
    expect(await main(['serve', '--help'], serve.io)).toBe(0);
    for (const flag of ['--host', '--port', '--max-payload', '--max-locks-per-session', '--max-waiters-per-key', '--heartbeat', '--store']) {
      expect(serve.written.stdout).toContain(flag);
    }
  });

  it('returns 2 for a missing or unknown command, a stray argument, or an invalid value', async () => {
    for (const argv of [[], ['start'], ['serve', 'now'], ['serve', '--port', '70000'], ['serve', '--store', 'redis'], ['serve', '--heartbeat=-5']]) {
      const { io, written } = fakeIo();
      expect(await main(argv, io)).toBe(2);
      expect(written.stderr).toMatch(/^lockwire: [^\n]+(\n[^\n]+)*\n\nUsage: lockwire/);
    }
  });

  it('names the environment variable at fault', async () => {
    const { io, written } = fakeIo({ LOCKWIRE_MAX_PAYLOAD: 'lots' });
    expect(await main(['serve'], io)).toBe(2);
    expect(written.stderr).toContain('LOCKWIRE_MAX_PAYLOAD "lots": expected an integer');
  });
});

describe('lockwire status (in process) against a server that never answers', () => {
  it.each([
    ['accepts the TCP connection and sends nothing', false],
    ['completes the WebSocket handshake and sends no welcome', true],
  ])('exits 69 at --connect-timeout and drops the socket when the server %s', async (_what, upgrade) => {
    const { url, connection } = await silentServer(upgrade);
    const { io, written } = fakeIo();
    const code = main(['status', '--url', url, '--connect-timeout', '200ms'], io);
    const socket = await within(connection, 'the connection');
    const ended = once(socket, 'end');
    expect(await within(code, 'the exit code', 5000)).toBe(69);
    expect(written.stderr).toBe(
      `lockwire status: cannot connect to ${url}: the server did not complete the WebSocket handshake and send its welcome within 200ms (--connect-timeout)\n`,
    );
    // Dropped, not left to a closing handshake this server would never answer (ws waits 30 s for one).
    await within(ended, "the client's end of the connection", 5000);
  });
});

describe('configuration', () => {
  it('takes flags over environment over defaults, per setting', () => {
    const config = resolveConfig([
      defaultsLayer(),
      envLayer({ LOCKWIRE_PORT: 'not-a-port', LOCKWIRE_HOST: '0.0.0.0', LOCKWIRE_HEARTBEAT: '', LOCKWIRE_MAX_WAITERS_PER_KEY: '12' }),
      flagLayer({ port: '0' }),
    ]);
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      maxPayload: 65536,
      maxKeyLength: 256,
      maxLocksPerSession: 1000,
      maxWaitersPerKey: 12,
      heartbeat: 10000,
      store: 'memory',
      logLevel: 'info',
    });
  });

  it('lists every invalid setting with its source', () => {
    expect(() =>
      resolveConfig([defaultsLayer(), envLayer({ LOCKWIRE_MAX_KEY_LENGTH: '0' }), flagLayer({ port: '1.5' })]),
    ).toThrow(/LOCKWIRE_MAX_KEY_LENGTH "0".*\n--port "1.5"|--port "1.5".*\nLOCKWIRE_MAX_KEY_LENGTH "0"/);
  });
});
