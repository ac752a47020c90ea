import { readFileSync } from 'node:fs';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { LockClient } from '@lockwire/client';
import { createLockServer, type LockServer } from '@lockwire/server';
import { decodeJwt, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { tokenCommand } from '../server/src/cli-token.js';
import { startLockwireProcess } from './helpers/lockwire-process.js';
import { startMuteRelay } from './helpers/mute-relay.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { ToolProcess } from './helpers/tool-process.js';
import { watchForEvent } from './helpers/watch-event.js';

const NODE = process.execPath;
/** A command that prints its fencing token, then holds until a line arrives on stdin. */
const HOLD_UNTIL_STDIN =
  "process.stdout.write('holding ' + process.env.LOCKWIRE_FENCING_TOKEN + '\\n');" +
  "process.stdin.once('data', () => process.exit(0));";
/** A command that prints its pid and runs until killed. */
const PRINT_PID_AND_LOOP = "console.log('pid ' + process.pid); setInterval(() => {}, 1000);";
/** Work a shell script starts: prints its pid and runs until killed; with `ignoreTerm` it ignores SIGTERM. */
const worker = (ignoreTerm: boolean) =>
  `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''}console.log('worker ' + process.pid); setInterval(() => {}, 1000);`;

let server: LockServer | undefined;
const clients: LockClient[] = [];
const tools: ToolProcess[] = [];
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const tool of tools.splice(0)) tool.kill();
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const client of clients.splice(0)) await client.close();
  await server?.close();
  server = undefined;
});

function lockwire(args: string[], env: NodeJS.ProcessEnv = {}): ToolProcess {
  const tool = ToolProcess.lockwire(args, env);
  tools.push(tool);
  return tool;
}

async function client(url: string): Promise<LockClient> {
  const connected = await LockClient.connect(url);
  clients.push(connected);
  return connected;
}

/** The /proc state letter of `pid` (R, S, T for stopped, Z...), or 'gone'. */
function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return 'gone';
  }
}

/**
 * True while `pid` runs or is stopped. A zombie does not count: where
 * nothing reaps orphans (a container's init), a killed grandchild stays one.
 */
function running(pid: number): boolean {
  const state = processState(pid);
  return state !== 'gone' && state !== 'Z';
}

/** Kills `pid` after the test if it still runs. */
function reap(pid: number): void {
  cleanups.push(() => {
    if (running(pid)) process.kill(pid, 'SIGKILL');
  });
}

/**
 * A TCP proxy whose server-to-client bytes can be held and then delivered in
 * one write, so frames the server sent apart reach the client in one read.
 */
async function coalescingProxy(targetPort: number): Promise<{ port: number; hold(): void; flush(): void }> {
  let holding = false;
  const links: { client: Socket; chunks: Buffer[] }[] = [];
  const sockets = new Set<Socket>();
  const proxy = createNetServer((clientSocket) => {
    const upstream = netConnect({ host: '127.0.0.1', port: targetPort });
    sockets.add(clientSocket).add(upstream);
    const link = { client: clientSocket, chunks: [] as Buffer[] };
    links.push(link);
    clientSocket.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => (holding ? link.chunks.push(chunk) : clientSocket.write(chunk)));
    clientSocket.on('close', () => upstream.destroy());
    upstream.on('close', () => clientSocket.destroy());
    clientSocket.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    proxy.close();
  });
  const address = proxy.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    hold: () => {
      holding = true;
    },
    flush: () => {
      holding = false;
      for (const link of links) if (link.chunks.length > 0) link.client.write(Buffer.concat(link.chunks.splice(0)));
    },
  };
}

describe('lockwire run: losing the lock', () => {
  it('exits 70 without starting the command when the lock is lost in the same network read as its grant', async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const thief = await client(server.url);
    const first = await observer.acquire('same-read');
    const proxy = await coalescingProxy(Number(new URL(server.url).port));
    const url = new URL(server.url);
    url.port = String(proxy.port);

    const queued = await watchForEvent(observer, 'same-read', (event) => event.event === 'queued');
    const run = lockwire(['run', '--key', 'same-read', '--url', url.toString(), '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    const queuedEvent = await queued();
    // The grant and the theft are sent apart and reach the tool together.
    proxy.hold();
    const stolen = await watchForEvent(observer, 'same-read', (event) => event.event === 'stolen');
    const granted = await watchForEvent(observer, 'same-read', (e) => e.event === 'acquired' && e.session === queuedEvent.session);
    await first?.release();
    await granted();
    expect(await thief.acquire('same-read', { steal: true })).not.toBeNull();
    await stolen();
    proxy.flush();

    expect((await run.waitForExit(5_000)).code).toBe(70);
    expect(run.text('stderr')).toMatch(/lost: it was stolen; the command was not started/);
    expect(run.lines.stdout).toEqual([]);
  });

  it('stops the command and exits 70 when the path to the server goes silent and the server hands the lock on', async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 100 });
    const observer = await client(server.url);
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    cleanups.push(() => proxy.close());
    const run = lockwire(['run', '--key', 'silent', '--url', proxy.url(server.url), '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await run.waitForLine(/^holding /);

    const released = await watchForEvent(observer, 'silent', (event) => event.event === 'released');
    proxy.hold(); // half-open: nothing carried, nothing closed
    await released();
    expect(await observer.acquire('silent', { acquireTimeout: 0 })).not.toBeNull();

    // The default --heartbeat (2s) notices within about 4s.
    expect((await run.waitForExit(10_000)).code).toBe(70);
    expect(run.text('stderr')).toMatch(/lock "silent" presumed lost: the server did not answer a ping within 2s/);
  });

  it('stops the whole command, a shell and the work it started, when the lock is stolen', async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const script = `"${NODE}" -e "${worker(false)}"; echo after`;
    const run = lockwire(['run', '--key', 'backup', '--kill-grace', '200ms', '--', 'sh', '-c', script], {
      LOCKWIRE_URL: server.url,
    });
    const pid = Number((await run.waitForLine(/^worker \d+$/)).slice(7));
    reap(pid);
    await observer.acquire('backup', { steal: true });
    expect((await run.waitForExit()).code).toBe(70);
    expect(running(pid)).toBe(false);
    expect(run.text()).not.toContain('after');
  });

  it('kills work that ignores SIGTERM after --kill-grace even when the shell that started it exited at once', async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const script = `"${NODE}" -e "${worker(true)}"; echo after`;
    const run = lockwire(['run', '--key', 'stubborn-work', '--kill-grace', '300ms', '--', 'sh', '-c', script], {
      LOCKWIRE_URL: server.url,
    });
    const pid = Number((await run.waitForLine(/^worker \d+$/)).slice(7));
    reap(pid);
    await observer.acquire('stubborn-work', { steal: true });
    expect((await run.waitForExit()).code).toBe(70);
    expect(running(pid)).toBe(false);
  });
});

describe('lockwire run: signals', () => {
  it('releases the lock only after everything a forwarded SIGTERM reached has exited', async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const script = `"${NODE}" -e "${worker(false)}"; echo after`;
    const run = lockwire(['run', '--key', 'nightly', '--', 'sh', '-c', script], { LOCKWIRE_URL: server.url });
    const pid = Number((await run.waitForLine(/^worker \d+$/)).slice(7));
    reap(pid);
    run.signal('SIGTERM');
    expect((await run.waitForExit()).code).toBe(128 + 15);
    const next = await observer.acquire('nightly', { acquireTimeout: 0 });
    expect({ nextGranted: next !== null, oldWorkRunning: running(pid) }).toEqual({ nextGranted: true, oldWorkRunning: false });
  });

  it('kills what is left of the command after --kill-grace when a forwarded SIGTERM ended only the shell', async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const script = `"${NODE}" -e "${worker(true)}"; echo after`;
    const run = lockwire(['run', '--key', 'nightly-2', '--kill-grace', '300ms', '--', 'sh', '-c', script], {
      LOCKWIRE_URL: server.url,
    });
    const pid = Number((await run.waitForLine(/^worker \d+$/)).slice(7));
    reap(pid);
    run.signal('SIGTERM');
    await run.waitForExit();
    expect(running(pid)).toBe(false);
    expect(await observer.acquire('nightly-2', { acquireTimeout: 0 })).not.toBeNull();
  });

  it("exits with the command's code after releasing when a signal arrives between the command's exit and the release", async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    cleanups.push(() => proxy.close());
    const script = "console.log('pid ' + process.pid); process.stdin.once('data', () => process.exit(4));";
    const run = lockwire(['run', '--key', 'late-signal', '--url', proxy.url(server.url), '--', NODE, '-e', script]);
    const pid = Number((await run.waitForLine(/^pid \d+$/)).slice(4));
    // Hold the release on the way to the server, end the command, and signal the tool meanwhile.
    proxy.hold();
    run.write('done\n');
    await expect.poll(() => running(pid), { timeout: 5000 }).toBe(false);
    const released = await watchForEvent(observer, 'late-signal', (event) => event.event === 'released');
    run.signal('SIGTERM');
    proxy.resume();
    expect(await run.waitForExit()).toEqual({ code: 4, signal: null });
    await released();
  });
  it('passes one Ctrl-C on to the command once, and SIGTERM still, when stdin is a terminal and the command shares its group', async () => {
    server = await createLockServer({ port: 0 });
    const command =
      "let n = 0; process.on('SIGINT', () => console.log('sigint ' + ++n)); console.log('ready ' + process.ppid);" +
      "process.on('SIGTERM', () => { console.log('count=' + n); process.exit(0); });" +
      "process.stdin.setEncoding('utf8'); process.stdin.on('data', (d) => { const m = /ping(\\d)/.exec(d); if (m) console.log('pong' + m[1]); });";
    // `script` runs the tool on a pseudo-terminal: stdin is a terminal, as in an interactive shell.
    const shell = `"${NODE}" server/bin/lockwire.mjs run --key tty-int -- "${NODE}" -e "$COMMAND_JS"`;
    const run = new ToolProcess('script', ['-qec', shell, '/dev/null'], {
      env: { LOCKWIRE_URL: server.url, COMMAND_JS: command, SHELL: '/bin/sh' },
    });
    tools.push(run);
    const toolPid = Number(/ready (\d+)/.exec(await run.waitForLine(/ready \d+/))?.[1]);
    run.write('\x03'); // Ctrl-C: the terminal sends SIGINT to its foreground process group
    await run.waitForLine(/sigint 1/);
    // Round trips through the terminal to the command: by the last, the tool has long handled its own SIGINT.
    for (let i = 1; i <= 5; i++) {
      run.write(`ping${i}\n`);
      await run.waitForLine(new RegExp(`^pong${i}`));
    }
    process.kill(toolPid, 'SIGTERM');
    const count = await run.waitForLine(/count=\d/);
    await run.waitForExit();
    expect(count.trim()).toBe('count=1');
  });

  it("stops the command's process group with the tool on SIGTSTP (Ctrl-Z), and on SIGCONT stops it for good and exits 70 if the lock passed on meanwhile", async () => {
    server = await createLockServer({ port: 0, heartbeatInterval: 100 });
    const observer = await client(server.url);
    const run = lockwire(['run', '--key', 'tstp', '--', NODE, '-e', PRINT_PID_AND_LOOP], { LOCKWIRE_URL: server.url });
    const pid = Number((await run.waitForLine(/^pid \d+$/)).slice(4));
    reap(pid);
    run.signal('SIGTSTP');
    // The stopped tool answers no heartbeat: the server cuts it and the lock passes on.
    expect(await observer.acquire('tstp', { acquireTimeout: 10_000 })).not.toBeNull();
    expect(processState(pid)).toBe('T');
    run.signal('SIGCONT');
    expect((await run.waitForExit()).code).toBe(70);
    expect(running(pid)).toBe(false);
  });

  it("passes SIGQUIT (Ctrl-\\) on to the command's process group rather than dying with the command left running", async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const run = lockwire(['run', '--key', 'quit', '--', NODE, '-e', PRINT_PID_AND_LOOP], { LOCKWIRE_URL: server.url });
    const pid = Number((await run.waitForLine(/^pid \d+$/)).slice(4));
    reap(pid);
    run.signal('SIGQUIT');
    expect(await run.waitForExit()).toEqual({ code: 128 + 3, signal: null });
    expect(await observer.acquire('quit', { acquireTimeout: 0 })).not.toBeNull();
    expect(running(pid)).toBe(false);
  });

  it('passes SIGUSR2 on to the command rather than dying of it', async () => {
    server = await createLockServer({ port: 0 });
    const script = "process.on('SIGUSR2', () => console.log('usr2')); console.log('ready'); process.stdin.once('data', () => process.exit(5));";
    const run = lockwire(['run', '--key', 'usr2', '--', NODE, '-e', script], { LOCKWIRE_URL: server.url });
    await run.waitForLine(/^ready$/);
    run.signal('SIGUSR2');
    await run.waitForLine(/^usr2$/);
    run.write('done\n');
    expect(await run.waitForExit()).toEqual({ code: 5, signal: null });
  });
});

describe('lockwire run --hold', () => {
  it('refuses --hold 0, and a hold that rounds to 0 ms, with exit 2 without running the command: the lock would expire as it is granted', async () => {
    const live = await createLockServer({ port: 0 });
    server = live;
    const holds = ['0', '0s', '0.4', '0.0001s'];
    const runs = holds.map((hold) =>
      lockwire(['run', '--key', 'zero-hold', '--hold', hold, '--url', live.url, '--', NODE, '-e', "console.log('ran')"]),
    );
    for (const [index, refused] of runs.entries()) {
      const hold = holds[index] ?? '';
      expect((await refused.waitForExit()).code).toBe(2);
      expect(refused.text()).toBe('');
      expect(refused.lines.stderr[0]).toBe(
        `lockwire run: --hold ${JSON.stringify(hold)}: expected a duration above 0, e.g. 30s, 10m; leave --hold out for a lock that does not expire`,
      );
    }
  });

  it('runs the command under a hold above 0', async () => {
    server = await createLockServer({ port: 0 });
    const run = lockwire(['run', '--key', 'short-hold', '--hold', '1m', '--url', server.url, '--', NODE, '-e', "console.log('ran')"]);
    expect((await run.waitForExit()).code).toBe(0);
    expect(run.text()).toBe('ran');
  });
});

describe('lockwire run: lock meta', () => {
  it("publishes only the host, the tool's pid and the command's name, and the --meta fields when given", async () => {
    server = await createLockServer({ port: 0 });
    const observer = await client(server.url);
    const secretArg = 'postgres://app:hunter2@db/prod';
    const plain = lockwire(['run', '--key', 'migrate', '--', NODE, '-e', HOLD_UNTIL_STDIN, secretArg], { LOCKWIRE_URL: server.url });
    await plain.waitForLine(/^holding /);
    const plainMeta = (await observer.status('migrate')).holders[0]?.meta;
    plain.write('done\n');
    expect((await plain.waitForExit()).code).toBe(0);
    expect(plainMeta).toEqual({ host: hostname(), pid: plain.pid, command: basename(NODE) });
    expect(JSON.stringify(plainMeta)).not.toContain('hunter2');

    const tagged = lockwire(['run', '--key', 'migrate', '--meta', '{"job":"nightly","step":2}', '--', NODE, '-e', HOLD_UNTIL_STDIN], {
      LOCKWIRE_URL: server.url,
    });
    await tagged.waitForLine(/^holding /);
    const taggedMeta = (await observer.status('migrate')).holders[0]?.meta;
    tagged.write('done\n');
    expect((await tagged.waitForExit()).code).toBe(0);
    expect(taggedMeta).toEqual({ host: hostname(), pid: tagged.pid, command: basename(NODE), job: 'nightly', step: 2 });

    for (const bad of ['[1]', 'job', `{"pad":"${'x'.repeat(1100)}"}`]) {
      const refused = lockwire(['run', '--key', 'migrate', '--meta', bad, '--', 'true'], { LOCKWIRE_URL: server.url });
      expect((await refused.waitForExit()).code).toBe(2);
      expect(refused.text('stderr')).toContain('--meta');
    }
  });

  it('refuses --meta fields named host, pid or command with exit 2: those are the tool\'s own', async () => {
    for (const bad of ['{"host":"elsewhere"}', '{"job":"x","pid":1}', '{"command":"rm"}']) {
      const refused = lockwire(['run', '--key', 'migrate', '--meta', bad, '--', 'true'], { LOCKWIRE_URL: 'ws://127.0.0.1:1/v1' });
      expect((await refused.waitForExit()).code).toBe(2);
      expect(refused.text('stderr')).toMatch(/--meta: (host|pid|command) is set by lockwire run/);
    }
  });
});

describe('lockwire run: a server that drains', () => {
  it('stops the command and exits 70 when the server drains while the command runs', async () => {
    server = await createLockServer({ port: 0 });
    const run = lockwire(['run', '--key', 'drain', '--url', server.url, '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await run.waitForLine(/^holding /);
    const closing = server.close();
    server = undefined;
    await closing;
    expect((await run.waitForExit()).code).toBe(70);
  });

  it('exits 69 (unavailable, worth trying again), not 1 (refused), when the server drains while run is queued', async () => {
    server = await createLockServer({ port: 0 });
    const holder = await LockClient.connect(server.url, { reconnect: false });
    clients.push(holder);
    await holder.acquire('drainq');
    const queued = await watchForEvent(holder, 'drainq', (event) => event.event === 'queued');
    const run = lockwire(['run', '--key', 'drainq', '--url', server.url, '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await queued();
    const closing = server.close();
    server = undefined;
    await closing;
    expect(await run.waitForExit()).toEqual({ code: 69, signal: null });
    expect(run.text('stderr')).toMatch(/^lockwire run: cannot acquire "drainq": .*shutting/);
    expect(run.text()).toBe('');
  });
});

describe('lockwire run: a server that stopped answering while run is queued', () => {
  /**
   * `lockwire run --key k ...flags` of a command that holds until its stdin
   * closes, on a relay in front of a fresh server that welcomes the tool and
   * then drops its every request; resolves once the relay saw its acquire.
   */
  async function queuedOnMuted(flags: string[] = []) {
    server = await createLockServer({ port: 0 });
    const relay = await startMuteRelay(server.url);
    cleanups.push(() => relay.close());
    const run = lockwire(['run', '--key', 'k', ...flags, '--url', relay.url, '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await relay.requestSeen('acquire');
    return { relay, run };
  }

  it('gives up (exit 75) about --wait after it started, even when the server does not answer the acquire', async () => {
    const { run } = await queuedOnMuted(['--wait', '1s']);
    expect(await run.waitForExit(6000)).toEqual({ code: 75, signal: null });
    expect(run.text('stderr')).toContain('lock "k" not acquired within the --wait time');
    expect(run.text()).toBe('');
  });

  it('exits 130 on SIGINT while waiting for the lock, even when the server does not answer the cancel', async () => {
    const { relay, run } = await queuedOnMuted();
    run.signal('SIGINT');
    expect(await run.waitForExit(6000)).toEqual({ code: 130, signal: null });
    await relay.requestSeen('cancel');
  });

  it('exits 143 on SIGTERM while waiting for the lock, even when the server does not answer the cancel', async () => {
    const { run } = await queuedOnMuted();
    run.signal('SIGTERM');
    expect(await run.waitForExit(6000)).toEqual({ code: 128 + 15, signal: null });
  });

  it('exits 69 when the server stops answering its pings while it waits without --wait, the command not run', async () => {
    const { run } = await queuedOnMuted(['--heartbeat', '200ms']);
    expect(await run.waitForExit(6000)).toEqual({ code: 69, signal: null });
    expect(run.text('stderr')).toBe('lockwire run: gave up waiting for "k": the server did not answer a ping within 200ms');
    expect(run.text()).toBe('');
  });

  it('exits 130 on Ctrl-C, and 75 at --wait, while queued on a lockwire serve process that was stopped (SIGSTOP)', async () => {
    const paused = await startLockwireProcess();
    // SIGCONT then SIGKILL, by the PID of the server this test started.
    cleanups.push(() => paused.kill());
    const holder = await LockClient.connect(paused.url, { reconnect: false });
    const observer = await LockClient.connect(paused.url, { reconnect: false });
    clients.push(holder, observer);
    await holder.acquire('queued');
    const queued = await watchForEvent(observer, 'queued', (event) => event.event === 'queued' && event.waiters === 2);
    const ctrlC = lockwire(['run', '--key', 'queued', '--url', paused.url, '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    const bounded = lockwire(['run', '--key', 'queued', '--wait', '3s', '--url', paused.url, '--', NODE, '-e', HOLD_UNTIL_STDIN]);
    await queued();
    paused.pause();
    ctrlC.signal('SIGINT');
    const [interrupted, timedOut] = await Promise.allSettled([ctrlC.waitForExit(6000), bounded.waitForExit(8000)]);
    expect({ interrupted, timedOut }).toEqual({
      interrupted: { status: 'fulfilled', value: { code: 130, signal: null } },
      timedOut: { status: 'fulfilled', value: { code: 75, signal: null } },
    });
  });
});

describe('lockwire connection settings', () => {
  it('counts --wait from the connect: a server that never completes the WebSocket handshake within it exits 69, the command not run', async () => {
    server = await createLockServer({ port: 0 });
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    cleanups.push(() => proxy.close());
    // Held: connections are accepted and go nowhere, as with a paused server or another service on the port.
    proxy.hold();
    const run = lockwire(['run', '--key', 'k', '--wait', '1s', '--url', proxy.url(server.url), '--', NODE, '-e', "console.log('ran')"]);
    // Bounded by the default exit wait, which also covers the tool's start on a loaded machine: the
    // message below, not the time, tells --wait from the --connect-timeout (10 s by default).
    expect((await run.waitForExit()).code).toBe(69);
    expect(run.text()).toBe('');
    expect(run.text('stderr')).toContain('did not complete the WebSocket handshake and send its welcome within 1s (--wait)');
  });

  it('tries the lock once with --wait 0 after connecting within --connect-timeout', async () => {
    server = await createLockServer({ port: 0 });
    const holder = await client(server.url);
    await holder.acquire('busy');
    const busy = lockwire(['run', '--key', 'busy', '--wait', '0', '--url', server.url, '--', NODE, '-e', "console.log('ran')"]);
    expect((await busy.waitForExit()).code).toBe(75);
    const free = lockwire(['run', '--key', 'free', '--wait', '0', '--url', server.url, '--', NODE, '-e', "console.log('ran')"]);
    expect((await free.waitForExit()).code).toBe(0);
    expect(free.text()).toBe('ran');
  });

  it('does not echo the access_token of LOCKWIRE_URL in a connection error', async () => {
    const status = lockwire(['status'], { LOCKWIRE_URL: 'ws://127.0.0.1:1/v1?access_token=sekret-jwt&x=1' });
    expect((await status.waitForExit()).code).toBe(69);
    expect(status.text('stderr')).toContain('cannot connect to ws://127.0.0.1:1/v1?access_token=REDACTED&x=1');
    expect(status.text('stderr')).not.toContain('sekret-jwt');
  });

  it('does not echo the userinfo password of LOCKWIRE_URL in a connection error, nor a URL that does not parse in the usage error', async () => {
    const status = lockwire(['status'], { LOCKWIRE_URL: 'ws://ops:sekret-pw@127.0.0.1:1/v1' });
    expect((await status.waitForExit()).code).toBe(69);
    expect(status.text('stderr')).toContain('cannot connect to ws://ops:REDACTED@127.0.0.1:1/v1');
    expect(status.text('stderr')).not.toContain('sekret-pw');
    const unparsable = lockwire(['status'], { LOCKWIRE_URL: 'ws://[?access_token=sekret-jwt' });
    expect((await unparsable.waitForExit()).code).toBe(2);
    expect(unparsable.text('stderr')).toBe(
      'lockwire status: --url (or LOCKWIRE_URL) "(unparsable URL)": not a URL; expected e.g. ws://127.0.0.1:7311/v1',
    );
    expect(unparsable.text('stderr')).not.toContain('sekret-jwt');
  });

  it('signs with LOCKWIRE_AUTH_SECRET when --secret is empty, as the server reads an empty setting', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      stdout: { write: (text: string) => out.push(text) },
      stderr: { write: (text: string) => err.push(text) },
      env: { LOCKWIRE_AUTH_SECRET: 'y'.repeat(48) },
      now: () => Date.now(),
    };
    expect(await tokenCommand(['--sub', 'ana', '--secret', ''], io)).toBe(0);
    const { payload } = await jwtVerify(out.join('').trim(), new TextEncoder().encode('y'.repeat(48)));
    expect(payload.sub).toBe('ana');
    const noSecret = { ...io, env: {} };
    expect(await tokenCommand(['--sub', 'ana', '--secret', ''], noSecret)).toBe(2);
    expect(err.join('')).toContain('no secret');
  });
});

describe('lockwire token --ttl', () => {
  it('refuses a bare number with exit 2 and a line saying to add a unit, as a token lifetime has no default unit', async () => {
    const bare = lockwire(['token', '--sub', 'ci', '--secret', 'x', '--ttl', '3600']);
    expect((await bare.waitForExit()).code).toBe(2);
    expect(bare.text()).toBe('');
    expect(bare.lines.stderr[0]).toBe('lockwire token: --ttl "3600" has no unit: add one, e.g. --ttl 3600s or --ttl 1h');
    for (const ttl of ['90000ms', '0s', '1.5h', '1y']) {
      const refused = lockwire(['token', '--sub', 'ci', '--secret', 'x', '--ttl', ttl]);
      expect((await refused.waitForExit()).code).toBe(2);
      expect(refused.lines.stderr[0]).toContain(`--ttl ${JSON.stringify(ttl)}: expected`);
    }
  });

  it('signs for the lifetime its unit gives: seconds, minutes, hours or days', async () => {
    for (const [ttl, seconds] of [['90s', 90], ['15m', 900], ['2h', 7200], ['7d', 604_800]] as const) {
      const token = lockwire(['token', '--sub', 'ci', '--secret', 'x', '--ttl', ttl]);
      expect((await token.waitForExit()).code).toBe(0);
      const claims = decodeJwt(token.text().trim());
      expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(seconds);
    }
  });
});
