import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import { LockClient, type LockEvent } from '@lockwire/client';
import { createLockServer, createManualClock, type LockServer } from '@lockwire/server';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { repoRoot, startLockwireProcess, type LockwireProcess } from './helpers/lockwire-process.js';
import { startMuteRelay, type MuteRelay } from './helpers/mute-relay.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { ToolProcess, processExists } from './helpers/tool-process.js';
import { watchForEvent } from './helpers/watch-event.js';

const NODE = process.execPath;
/** A command that prints its fencing token and the key, then holds until a line arrives on stdin. */
const HOLD_UNTIL_STDIN =
  "process.stdout.write('holding ' + process.env.LOCKWIRE_FENCING_TOKEN + ' ' + process.env.LOCKWIRE_KEY + '\\n');" +
  "process.stdin.once('data', () => process.exit(0));";

let server: LockServer;
let observer: LockClient;
const tools: ToolProcess[] = [];

function lockwire(args: string[], env: NodeJS.ProcessEnv = {}): ToolProcess {
  const tool = ToolProcess.lockwire(args, { LOCKWIRE_URL: server.url, ...env });
  tools.push(tool);
  return tool;
}

/** The first event on `key` matching `match`, from a watch the observer starts now. */
const nextEvent = (key: string, match: (event: LockEvent) => boolean) => watchForEvent(observer, key, match);

beforeEach(async () => {
  server = await createLockServer({ port: 0 });
  observer = await LockClient.connect(server.url);
});

afterEach(async () => {
  for (const tool of tools.splice(0)) tool.kill();
  await observer.close();
  await server.close();
});

afterAll(() => {
  for (const tool of tools) tool.kill();
});

describe('lockwire --help and usage', () => {
  it('lists every command, documents each one and exits 2 on bad usage', async () => {
    const help = lockwire(['--help']);
    expect(await help.waitForExit()).toEqual({ code: 0, signal: null });
    for (const command of ['serve', 'token', 'run', 'status', 'watch']) expect(help.text()).toMatch(new RegExp(`^  ${command} `, 'm'));

    for (const command of ['run', 'status', 'watch']) {
      const usage = lockwire([command, '--help']);
      expect(await usage.waitForExit()).toEqual({ code: 0, signal: null });
      expect(usage.text()).toContain(`Usage: lockwire ${command}`);
      expect(usage.text()).toContain('--url URL');
      expect(usage.text()).toMatch(/--connect-timeout DURATION\n.*\n.*\n.*exit 69 \(default 10s\)/);
    }

    const tokenUsage = lockwire(['token', '--help']);
    expect(await tokenUsage.waitForExit()).toEqual({ code: 0, signal: null });
    expect(tokenUsage.text()).toContain('Usage: lockwire token');

    const noCommand = lockwire(['run', '--key', 'k']);
    const badDuration = lockwire(['run', '--key', 'k', '--wait', 'soon', '--', 'true']);
    const badHeartbeat = lockwire(['run', '--key', 'k', '--heartbeat', 'often', '--', 'true']);
    const unknownFlag = lockwire(['status', '--verbose']);
    const zeroConnectTimeout = lockwire(['watch', '--connect-timeout', '0']);
    const badConnectTimeout = lockwire(['run', '--key', 'k', '--connect-timeout', 'soon', '--', 'true']);
    const badWatchHeartbeat = lockwire(['watch', '--heartbeat', 'often']);
    const tokenUnknownFlag = lockwire(['token', '--sub', 'a', '--verbose']);
    const tokenMissingValue = lockwire(['token', '--sub']);
    const bads = [noCommand, badDuration, badHeartbeat, unknownFlag, zeroConnectTimeout, badConnectTimeout, badWatchHeartbeat, tokenUnknownFlag, tokenMissingValue];
    for (const bad of bads) {
      expect((await bad.waitForExit()).code).toBe(2);
    }
    expect(zeroConnectTimeout.text('stderr')).toContain('--connect-timeout "0": expected a duration above 0');
    expect(badConnectTimeout.text('stderr')).toContain('--connect-timeout "soon"');
    expect(noCommand.text('stderr')).toContain('missing the command');
    expect(badDuration.text('stderr')).toContain('--wait "soon"');
    expect(badHeartbeat.text('stderr')).toContain('--heartbeat "often"');
    expect(badWatchHeartbeat.text('stderr')).toContain('lockwire watch: --heartbeat "often"');
    // A flag a tool does not take, or one missing its value: the problem, then the tool's usage, on stderr.
    expect(unknownFlag.text('stderr')).toMatch(/^lockwire status: Unknown option '--verbose'.*\n\nUsage: lockwire status/s);
    expect(tokenUnknownFlag.text('stderr')).toMatch(/^lockwire token: Unknown option '--verbose'.*\n\nUsage: lockwire token/s);
    expect(tokenMissingValue.text('stderr')).toMatch(/^lockwire token: Option '--sub <value>' argument missing\n\nUsage: lockwire token/);
    for (const bad of bads) expect(bad.text()).toBe('');
  });
});

describe('lockwire run', () => {
  it('holds the lock while the command runs, and a second run waits and gets it after', async () => {
    const first = lockwire(['run', '--key', 'deploy', '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    const firstLine = await first.waitForLine(/^holding /);
    const [, firstToken, key] = firstLine.split(' ');
    expect(key).toBe('deploy');
    const status = await observer.status('deploy');
    expect(status.holders).toEqual([expect.objectContaining({ token: Number(firstToken), mode: 'exclusive' })]);
    expect(status.holders[0]?.meta).toMatchObject({ command: basename(NODE), pid: first.pid });

    const queued = await nextEvent('deploy', (event) => event.event === 'queued');
    const second = lockwire(['run', '--key', 'deploy', '--wait', '30s', '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await queued();
    expect(second.lines.stdout).toEqual([]);

    first.write('done\n');
    expect(await first.waitForExit()).toEqual({ code: 0, signal: null });
    const secondLine = await second.waitForLine(/^holding /);
    expect(Number(secondLine.split(' ')[1])).toBeGreaterThan(Number(firstToken));
    second.write('done\n');
    expect(await second.waitForExit()).toEqual({ code: 0, signal: null });
    expect((await observer.status('deploy')).locked).toBe(false);
  });

  it("exits with the command's code, and 128+N when the command is killed by signal N", async () => {
    const seven = lockwire(['run', '--key', 'codes', '--', NODE, '-e', 'process.exit(7)']);
    expect((await seven.waitForExit()).code).toBe(7);
    const killed = lockwire(['run', '--key', 'codes', '--', NODE, '-e', "process.kill(process.pid, 'SIGTERM')"]);
    expect((await killed.waitForExit()).code).toBe(128 + 15);
    const missing = lockwire(['run', '--key', 'codes', '--', 'lockwire-no-such-command']);
    expect((await missing.waitForExit()).code).toBe(127);
    expect((await observer.status('codes')).locked).toBe(false);
  });

  it('exits 75 without running the command when the lock is not granted within --wait', async () => {
    const holder = await observer.acquire('busy');
    expect(holder).not.toBeNull();
    const run = lockwire(['run', '--key', 'busy', '--wait', '150ms', '--', NODE, '-e', "console.log('ran')"]);
    expect((await run.waitForExit()).code).toBe(75);
    expect(run.text()).not.toContain('ran');
    expect(run.text('stderr')).toContain('not acquired');
    expect((await observer.status('busy')).queue).toEqual([]);
  });

  it('stops the command with SIGTERM and exits 70 when the lock is stolen', async () => {
    const script =
      "process.on('SIGTERM', () => { console.log('terminated'); process.exit(0); });" +
      "console.log('holding'); setInterval(() => {}, 1000);";
    const run = lockwire(['run', '--key', 'job', '--', NODE, '-e', script]);
    await run.waitForLine(/^holding$/);
    await observer.acquire('job', { steal: true });
    expect((await run.waitForExit()).code).toBe(70);
    expect(run.text()).toContain('terminated');
    expect(run.text('stderr')).toMatch(/lock "job" lost: it was stolen/);
  });

  it('kills a command that ignores SIGTERM after --kill-grace when the lock expires', async () => {
    // The hold expires on a manual clock, once the command has started: a slow start cannot outlast it.
    const clock = createManualClock();
    const timed = await createLockServer({ port: 0, clock });
    try {
      const script = "process.on('SIGTERM', () => {}); console.log('pid ' + process.pid); setInterval(() => {}, 1000);";
      const run = lockwire(['run', '--key', 'stubborn', '--hold', '300', '--kill-grace', '200ms', '--', NODE, '-e', script], {
        LOCKWIRE_URL: timed.url,
      });
      const pid = Number((await run.waitForLine(/^pid \d+$/)).slice(4));
      expect(processExists(pid)).toBe(true);
      clock.advance(300);
      expect((await run.waitForExit()).code).toBe(70);
      expect(run.text('stderr')).toMatch(/lost: it was expired/);
      expect(processExists(pid)).toBe(false);
    } finally {
      await timed.close();
    }
  });
});

describe('lockwire status', () => {
  it('prints holders, tokens, times, queue length and meta as a table and as JSON', async () => {
    const ana = await observer.acquire('st:doc', { holdTimeout: 600_000, meta: { user: 'ana' } });
    const waiter = await LockClient.connect(server.url);
    // The waiter's acquire ends with its connection, at the end of the test.
    const queued = waiter.acquire('st:doc').catch(() => null);
    await expect.poll(async () => (await observer.status('st:doc')).queue.length, { timeout: 5000 }).toBe(1);

    const table = lockwire(['status', '--prefix', 'st:']);
    expect((await table.waitForExit()).code).toBe(0);
    const [header, row, ...rest] = table.lines.stdout;
    expect(header).toMatch(/^KEY\s+MODE\s+SESSION\s+TOKEN\s+HELD FOR\s+EXPIRES IN\s+QUEUE\s+META$/);
    expect(row?.split(/\s{2,}/)).toEqual([
      'st:doc',
      'exclusive',
      observer.session,
      String(ana?.token),
      expect.stringMatching(/^\d+(ms|s)$/),
      expect.stringMatching(/^(9m5\d|10m00)s$/),
      '1',
      '{"user":"ana"}',
    ]);
    expect(rest).toEqual([]);

    const json = lockwire(['status', '--prefix', 'st:', '--json']);
    expect((await json.waitForExit()).code).toBe(0);
    const parsed: unknown = JSON.parse(json.text());
    const listed = await observer.list({ prefix: 'st:' });
    expect(parsed).toEqual({ ...listed, locks: listed.locks.map(({ heldByYou: _mine, ...lock }) => lock) });

    const empty = lockwire(['status', '--prefix', 'none:']);
    expect((await empty.waitForExit()).code).toBe(0);
    expect(empty.text()).toBe('no locks held under "none:"');

    await waiter.close();
    expect(await queued).toBeNull();
  });

  it('prints --json exactly as GET /v1/locks gives the list', async () => {
    const waiter = await LockClient.connect(server.url);
    try {
      await observer.acquire('json:a', { meta: { job: 'x' }, holdTimeout: 60_000 });
      await observer.acquire('json:b', { mode: 'shared' });
      const queued = await nextEvent('json:a', (event) => event.event === 'queued');
      void waiter.acquire('json:a').catch(() => null);
      await queued();
      const http = new URL(server.url);
      http.protocol = 'http:';
      http.pathname = '/v1/locks';
      const fromHttp: unknown = await (await fetch(http)).json();
      const status = lockwire(['status', '--json']);
      expect((await status.waitForExit()).code).toBe(0);
      expect(JSON.parse(status.text())).toEqual(fromHttp);
    } finally {
      await waiter.close();
    }
  });

  it('exits 69 at --connect-timeout when the server accepts the TCP connection but never completes the WebSocket handshake', async () => {
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    // Held: connections are accepted and go nowhere, as with a paused server or another service on the port.
    proxy.hold();
    try {
      const status = lockwire(['status', '--connect-timeout', '300ms'], { LOCKWIRE_URL: proxy.url(server.url) });
      // The default exit wait also covers the tool's start on a loaded machine; the message names the deadline.
      expect((await status.waitForExit()).code).toBe(69);
      expect(status.text('stderr')).toBe(
        `lockwire status: cannot connect to ${proxy.url(server.url)}: ` +
          'the server did not complete the WebSocket handshake and send its welcome within 300ms (--connect-timeout)',
      );
      expect(proxy.accepted).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it('exits 69 at --connect-timeout when the server welcomed it and never answers its list', async () => {
    const relay = await startMuteRelay(server.url);
    try {
      const status = lockwire(['status', '--connect-timeout', '1s'], { LOCKWIRE_URL: relay.url });
      await relay.requestSeen('list');
      expect(await status.waitForExit(8000)).toEqual({ code: 69, signal: null });
      expect(status.text('stderr')).toBe('lockwire status: the server did not answer the list within 1s (--connect-timeout)');
      expect(status.text()).toBe('');
    } finally {
      await relay.close();
    }
  });

  it('sends --token as a bearer credential and exits 1, saying unauthorized, when the server answers the upgrade with 401', async () => {
    const refusing = await startRefusingServer(401);
    try {
      const status = lockwire(['status', '--token', 'sekret'], { LOCKWIRE_URL: refusing.url });
      const fromEnv = lockwire(['status'], { LOCKWIRE_URL: refusing.url, LOCKWIRE_TOKEN: 'from-env' });
      expect((await status.waitForExit()).code).toBe(1);
      expect((await fromEnv.waitForExit()).code).toBe(1);
      expect(refusing.seen.sort()).toEqual(['Bearer from-env', 'Bearer sekret']);
      expect(status.text('stderr')).toBe(
        `lockwire status: cannot connect to ${refusing.url}: unauthorized: the token is missing, invalid or expired (HTTP 401)`,
      );
    } finally {
      refusing.close();
    }
  });

  it('exits 1 saying forbidden on a 403 and 69 (worth trying again) on a 503 upgrade answer', async () => {
    const forbidding = await startRefusingServer(403);
    const draining = await startRefusingServer(503);
    try {
      const forbidden = lockwire(['watch'], { LOCKWIRE_URL: forbidding.url });
      const unavailable = lockwire(['watch'], { LOCKWIRE_URL: draining.url });
      expect((await forbidden.waitForExit()).code).toBe(1);
      expect(forbidden.text('stderr')).toBe(
        `lockwire watch: cannot connect to ${forbidding.url}: forbidden: the server refused this client (HTTP 403)`,
      );
      expect((await unavailable.waitForExit()).code).toBe(69);
      expect(unavailable.text('stderr')).toBe(
        `lockwire watch: cannot connect to ${draining.url}: the server is draining or at its connection limit (HTTP 503)`,
      );
    } finally {
      forbidding.close();
      draining.close();
    }
  });

  it('exits 1 saying not found on a 404 (a URL without /v1): trying again will not help', async () => {
    const elsewhere = await startRefusingServer(404);
    try {
      const run = lockwire(['run', '--key', 'k', '--', NODE, '-e', "process.stdout.write('ran')"], { LOCKWIRE_URL: elsewhere.url });
      expect((await run.waitForExit()).code).toBe(1);
      expect(run.text('stderr')).toBe(
        `lockwire run: cannot connect to ${elsewhere.url}: not found: the URL is not a lockwire WebSocket endpoint (its path is /v1) (HTTP 404)`,
      );
      expect(run.text()).toBe('');
    } finally {
      elsewhere.close();
    }
  });

  it('exits 2 without connecting for a --url that is not a WebSocket URL or a token no header can carry, and sends a token without its final newline', async () => {
    const refusing = await startRefusingServer(401);
    try {
      const notUrl = lockwire(['status', '--url', 'localhost:7311']);
      const ftp = lockwire(['watch', '--url', 'ftp://127.0.0.1:7311/v1']);
      const blankInside = lockwire(['status', '--token', 'a b'], { LOCKWIRE_URL: refusing.url });
      const newline = lockwire(['status'], { LOCKWIRE_URL: refusing.url, LOCKWIRE_TOKEN: 'from-a-file\n' });
      expect((await notUrl.waitForExit()).code).toBe(2);
      expect(notUrl.text('stderr')).toBe(
        'lockwire status: --url (or LOCKWIRE_URL) "localhost:7311": expected a ws:// or wss:// URL, e.g. ws://127.0.0.1:7311/v1',
      );
      expect((await ftp.waitForExit()).code).toBe(2);
      expect((await blankInside.waitForExit()).code).toBe(2);
      expect(blankInside.text('stderr')).toMatch(/^lockwire status: the token \(--token or LOCKWIRE_TOKEN\) has characters/);
      expect((await newline.waitForExit()).code).toBe(1);
      expect(refusing.seen).toEqual(['Bearer from-a-file']);
    } finally {
      refusing.close();
    }
  });

  it('run, status and watch exit 1 without a token or with a bad one on a server that requires tokens, and run starts no command', async () => {
    const guarded = await createLockServer({ port: 0, auth: { secret: 'a-secret-of-at-least-32-bytes-length!!' } });
    try {
      const env = { LOCKWIRE_URL: guarded.url };
      const started = [
        lockwire(['run', '--key', 'k', '--', NODE, '-e', "process.stdout.write('ran')"], env),
        lockwire(['status'], env),
        lockwire(['watch'], env),
        lockwire(['run', '--key', 'k', '--', NODE, '-e', "process.stdout.write('ran')"], { ...env, LOCKWIRE_TOKEN: 'not.a.jwt' }),
      ];
      const exits = await Promise.all(started.map((tool) => tool.waitForExit()));
      expect(exits.map((exit) => exit.code)).toEqual([1, 1, 1, 1]);
      for (const tool of started) {
        expect(tool.text('stderr')).toMatch(/: unauthorized: the token is missing, invalid or expired \(HTTP 401\)$/);
        expect(tool.text()).toBe('');
      }
    } finally {
      await guarded.close();
    }
  });
});

/** An HTTP server that answers every WebSocket upgrade with `status`, keeping the Authorization headers it saw. */
async function startRefusingServer(status: number): Promise<{ url: string; seen: (string | undefined)[]; close(): void }> {
  const seen: (string | undefined)[] = [];
  const refusing = createServer();
  refusing.on('upgrade', (request, socket) => {
    seen.push(request.headers.authorization);
    socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  refusing.listen(0, '127.0.0.1');
  await once(refusing, 'listening');
  const { port } = refusing.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/v1`, seen, close: () => refusing.close() };
}

describe('lockwire watch', () => {
  it('prints the snapshot then one JSON line per event, and exits 0 on SIGINT', async () => {
    await observer.acquire('w:held', { meta: { n: 1 } });
    const watch = lockwire(['watch', '--prefix', 'w:', '--json']);
    const snapshot: unknown = JSON.parse(await watch.waitForLine(/"type":"snapshot"/));
    expect(snapshot).toEqual({
      type: 'snapshot',
      truncated: false,
      locks: [expect.objectContaining({ key: 'w:held', holders: [expect.objectContaining({ meta: { n: 1 } })] })],
    });
    // As `status --json` and `GET /v1/locks` give a lock: no `heldByYou`, which would only describe the tool's own session.
    expect((snapshot as { locks: object[] }).locks[0]).not.toHaveProperty('heldByYou');

    const lease = await observer.acquire('w:new');
    await lease?.release();
    const released = JSON.parse(await watch.waitForLine(/"event":"released"/)) as LockEvent & { type: string };
    const acquired = JSON.parse(await watch.waitForLine(/"event":"acquired"/)) as LockEvent & { type: string };
    expect(acquired).toMatchObject({ type: 'event', key: 'w:new', session: observer.session, token: lease?.token });
    expect(released).toMatchObject({ type: 'event', key: 'w:new', holders: 0, waiters: 0 });
    expect(watch.lines.stdout.map((line) => (JSON.parse(line) as { event?: string }).event)).toEqual([
      undefined,
      'acquired',
      'released',
    ]);

    watch.signal('SIGINT');
    expect(await watch.waitForExit()).toEqual({ code: 0, signal: null });
  });

  it('prints one human line per event with the key, session, token and counts', async () => {
    const watch = lockwire(['watch', '--prefix', 'h:']);
    await watch.waitForLine(/^watching keys under "h:"/, { stream: 'stderr' });
    const lease = await observer.acquire('h:room', { meta: { host: 'a' } });
    const line = await watch.waitForLine(/acquired/);
    expect(line).toMatch(
      new RegExp(
        `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  acquired  "h:room" session=${observer.session} token=${lease?.token}` +
          ` mode=exclusive holders=1 waiters=0 meta=\\{"host":"a"\\}$`,
      ),
    );
    watch.signal('SIGTERM');
    expect((await watch.waitForExit()).code).toBe(0);
  });

  describe('against a server that stopped answering', () => {
    let paused: LockwireProcess | undefined;
    let relay: MuteRelay | undefined;
    afterEach(async () => {
      // SIGCONT then SIGKILL, by the PID of the server this test started.
      await paused?.kill();
      paused = undefined;
      await relay?.close();
      relay = undefined;
    });

    it('exits 0 within about 1 s on Ctrl-C while its watch request is unanswered', async () => {
      relay = await startMuteRelay(server.url);
      const watch = lockwire(['watch', '--url', relay.url]);
      await relay.requestSeen('watch');
      watch.signal('SIGINT');
      expect(await watch.waitForExit(5000)).toEqual({ code: 0, signal: null });
      expect(watch.text()).toBe('');
    });

    it('exits 0 promptly on Ctrl-C rather than waiting out the closing handshake', async () => {
      paused = await startLockwireProcess();
      const watch = lockwire(['watch'], { LOCKWIRE_URL: paused.url });
      await watch.waitForLine(/^watching every key/, { stream: 'stderr' });
      paused.pause();
      watch.signal('SIGINT');
      // The close is bounded at 1 s; unbounded, it waits for ws's 30 s closing timeout.
      expect(await watch.waitForExit(5000)).toEqual({ code: 0, signal: null });
    });
  });

  it('exits 69 within about twice --heartbeat when the path to the server goes silent after the snapshot', async () => {
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    try {
      const watch = lockwire(['watch', '--heartbeat', '200ms'], { LOCKWIRE_URL: proxy.url(server.url) });
      await watch.waitForLine(/^watching every key/, { stream: 'stderr' });
      proxy.hold(); // half-open: nothing carried, nothing closed
      expect(await watch.waitForExit(5000)).toEqual({ code: 69, signal: null });
      expect(watch.lines.stderr.slice(1)).toEqual(['lockwire watch: the server did not answer a ping within 200ms']);
    } finally {
      await proxy.close();
    }
  });

  it('exits 69 when the server goes away', async () => {
    const watch = lockwire(['watch', '--json']);
    await watch.waitForLine(/"type":"snapshot"/);
    await observer.close();
    await server.close();
    expect((await watch.waitForExit()).code).toBe(69);
  });
});

describe('a reader of the output that went away', () => {
  /**
   * Runs `lockwire ARGS` with stdout piped to the test; `closeAfterFirst`
   * closes the reading end once the first output arrived, as `| head -1`
   * does, otherwise at once, before the tool wrote anything.
   */
  function piped(args: string[], closeAfterFirst: boolean) {
    const child = spawn(NODE, ['server/bin/lockwire.mjs', ...args], {
      cwd: repoRoot,
      env: { ...process.env, LOCKWIRE_URL: server.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const closed = closeAfterFirst
      ? new Promise<void>((resolve) => child.stdout.once('data', () => resolve())).then(() => child.stdout.destroy())
      : Promise.resolve(child.stdout.destroy());
    /** The exit code, or 'running' when it has not exited within `ms`. */
    async function exitWithin(ms: number): Promise<number | null | 'running'> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const running = new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
      return Promise.race([exited, running]).finally(() => clearTimeout(timer));
    }
    return { child, exited, closed, exitWithin, stderr: () => stderr };
  }

  it('watch exits 141 with no message at its next event after its reader closed after the first line (lockwire watch --json | head -1)', async () => {
    const watch = piped(['watch', '--json'], true);
    try {
      await watch.closed;
      let code: number | null | undefined;
      void watch.exited.then((exitCode) => (code = exitCode));
      // Each event is a line to write, and the first write after the close fails.
      for (let i = 0; i < 50 && code === undefined; i++) await (await observer.acquire(`pipe${i}`))?.release();
      const result = await watch.exitWithin(5000);
      expect({ result, stderr: watch.stderr() }).toEqual({ result: 141, stderr: '' });
    } finally {
      watch.child.kill('SIGKILL');
    }
  });

  it('status exits 141 with no message when its reader closed before it printed', async () => {
    await observer.acquire('piped');
    const status = piped(['status'], false);
    try {
      const result = await status.exitWithin(10_000);
      expect({ result, stderr: status.stderr() }).toEqual({ result: 141, stderr: '' });
    } finally {
      status.child.kill('SIGKILL');
    }
  });
});
