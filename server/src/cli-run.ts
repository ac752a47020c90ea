import { isatty } from 'node:tty';
import { constants as osConstants, hostname } from 'node:os';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_META_BYTES } from '@lockwire/protocol';
import type { Lease, LockClient } from '@lockwire/client';
import {
  CONNECT_OPTIONS,
  CONNECT_USAGE,
  checkConnection,
  closeTool,
  connectDeadlineOf,
  connectOrReport,
  describeError,
  onOutputClosed,
  durationProblem,
  parseDuration,
  settleWithin,
  usageFailure,
  type ConnectDeadline,
  type ConnectFlags,
  type ToolIo,
} from './cli-connect.js';
import { exitCodeFor, ToolExit } from './cli-exit.js';
import { waitForLock } from './cli-run-wait.js';
import {
  TERMINAL_SIGNALS,
  followJobControl,
  listenForSignals,
  startCommand,
  type SignalRoute,
} from './cli-run-child.js';

/** The child's environment variable that carries the lock's fencing token. */
export const FENCING_TOKEN_ENV = 'LOCKWIRE_FENCING_TOKEN';

export const RUN_USAGE = `Usage: lockwire run --key KEY [options] -- COMMAND [ARGS...]

Runs COMMAND while holding the lock KEY on a lockwire server, like flock(1)
across machines. The command inherits stdin, stdout and stderr, and gets the
lock's fencing token in ${FENCING_TOKEN_ENV} (and the key in LOCKWIRE_KEY).
The lock is released when the command exits.

While it waits for the lock and while the command runs, the tool pings the
server every --heartbeat. While waiting, a ping not answered within
--heartbeat ends the wait: exit 69. While the command runs, it counts as a
lost lock. A silent network path is so noticed within about twice
--heartbeat. When the lock is lost
(expired, stolen, revoked, connection lost or silent) the command is sent
SIGTERM, then SIGKILL after --kill-grace. A lock lost before the command
started (in the same read as its grant) exits 70 without starting it.

Signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2, SIGALRM, SIGVTALRM,
SIGXCPU, SIGIO, SIGPWR and SIGSTKFLT go on to the command. When stdin is not
a terminal the command runs in its own session and process group, and they
go to the whole group: what a script started stops with it, and after a
signal the lock is released only once the whole group has exited (what is
left when the command itself exits gets --kill-grace, then SIGKILL).
SIGTSTP (Ctrl-Z) stops the group, then the tool; SIGCONT continues both.
When stdin is a terminal the command stays in the terminal's foreground
group, so it can read it, and the terminal signals it directly: SIGINT,
SIGQUIT and SIGHUP do not go on (send them to the group: kill -INT -PGID),
the others go to the command itself. A stopped tool answers no heartbeat:
stopped longer than the server's --heartbeat, it loses the lock and, once
continued, stops the command and exits 70. SIGSTOP cannot be caught: a
tool stopped alone with it leaves the command running while the server
hands the lock on. Send SIGTSTP to the tool's group, as Ctrl-Z does.

Lock meta, shown to every client that may watch the key: host (this
machine's name), pid (the tool's), command (the program's file name, no
path and no arguments), and the fields of --meta, which may not replace
those three (exit 2).

--wait bounds the whole wait for the lock, connecting included: a --wait
shorter than --connect-timeout is the connect deadline too, and the lock
is waited for only for what is left of it after connecting. The server
answers when that runs out; one that does not is given up on 0.5 s later
(exit 75). --wait 0 tries the lock once, after connecting within
--connect-timeout. A signal while waiting (SIGINT, SIGTERM, any of those
passed on below) cancels the wait and exits 128+N (130, 143). The tool
does not wait for the server to answer the cancel: it closes the
connection, which ends the session, so the server drops the waiter and
releases any grant that raced the cancel.

Exit status: the command's (128+N when killed by signal N); 128+N when
signal N came while waiting for the lock; 75 when the lock was not granted
within --wait; 70 when the lock was lost; 69 when the server cannot be
reached, answers the connect with HTTP 503 (draining, connection limit),
has not completed the WebSocket handshake and sent its welcome by the
connect deadline, or, before the grant, the connection ends, a ping goes
unanswered, the server drains (shutting_down) or cannot reach its store
(store_unavailable); 1 when the server refuses the token (HTTP 401: missing,
invalid or expired; HTTP 403), the connect otherwise (HTTP 404: the URL
is not /v1) or the request (forbidden, too_many_waiters...); 127 when the
command cannot be started; 2 on bad usage (also a --url that is not a
ws:// or wss:// URL).

Options:
  --key KEY              the lock to hold (required)
  --wait DURATION        give up after waiting this long, connecting included
                         (default: wait forever)
  --hold DURATION        the lock expires this long after the grant; above 0
                         (default: never)
  --shared               take a shared lock instead of an exclusive one
  --kill-grace DURATION  time between SIGTERM and SIGKILL on loss (default 5s)
  --heartbeat DURATION   ping interval and deadline while waiting for the lock
                         and while the command runs (default 2s; 0: no pings,
                         a silent path goes unnoticed)
  --meta JSON            a JSON object of fields added to the lock meta
${CONNECT_USAGE}

Durations are milliseconds, or a number with ms, s, m or h: 30s, 10m, 1h.
`;

const DEFAULT_KILL_GRACE_MS = 5000;
/**
 * With the server's default heartbeat (10 s: a silent connection is cut, and
 * its locks passed on, no sooner than about 10 s after it went silent), 2 s
 * notices a silent path within about 4 s, and with the default kill grace the
 * command is gone before the lock can pass on.
 */
const DEFAULT_HEARTBEAT_MS = 2000;
/** How long the release may take after the command ended: a silent server must not keep the tool. */
const RELEASE_WAIT_MS = 2000;
/** The meta fields the tool sets itself; `--meta` may not replace them. */
const BUILT_IN_META = ['host', 'pid', 'command'] as const;

type Meta = Record<string, unknown>;

interface RunPlan {
  key: string;
  wait: number | null;
  hold: number | null;
  shared: boolean;
  killGrace: number;
  heartbeat: number;
  meta: Meta;
  command: [string, ...string[]];
  flags: ConnectFlags;
  /** `--connect-timeout`, or `--wait` when that is shorter (and not 0). */
  connectDeadline: ConnectDeadline;
}

/** The lock meta: host, the tool's pid, the program's file name, and the `--meta` fields; a string is the usage problem. */
function metaFor(program: string, text: string | undefined): Meta | string {
  let extra: unknown = {};
  if (text !== undefined) {
    try {
      extra = JSON.parse(text);
    } catch {
      return `--meta ${JSON.stringify(text)}: not JSON`;
    }
  }
  if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) return '--meta: expected a JSON object';
  // Whoever watches the key must be able to trust where the holder runs.
  const taken = BUILT_IN_META.find((name) => Object.hasOwn(extra, name));
  if (taken !== undefined) return `--meta: ${taken} is set by lockwire run and cannot be replaced (it sets ${BUILT_IN_META.join(', ')})`;
  const meta: Meta = { host: hostname(), pid: process.pid, command: basename(program), ...extra };
  const bytes = Buffer.byteLength(JSON.stringify(meta));
  if (bytes > MAX_META_BYTES) return `--meta: the lock meta would be ${bytes} bytes, more than ${MAX_META_BYTES}`;
  return meta;
}

/** Parses the flags before `--`; a string is the usage problem. */
function plan(args: string[]): RunPlan | 'help' | string {
  const split = args.indexOf('--');
  const flags = split === -1 ? args : args.slice(0, split);
  const command = split === -1 ? [] : args.slice(split + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: flags,
      strict: true,
      allowPositionals: false,
      options: {
        ...CONNECT_OPTIONS,
        key: { type: 'string' },
        wait: { type: 'string' },
        hold: { type: 'string' },
        shared: { type: 'boolean' },
        'kill-grace': { type: 'string' },
        heartbeat: { type: 'string' },
        meta: { type: 'string' },
      },
    }));
  } catch (error) {
    return describeError(error);
  }
  if (values.help === true) return 'help';
  if (values.key === undefined) return '--key is required';
  const [program, ...programArgs] = command;
  if (program === undefined || program === '') return 'missing the command: lockwire run --key KEY -- COMMAND';
  const names = ['wait', 'hold', 'kill-grace', 'heartbeat'] as const;
  const durations: Record<(typeof names)[number], number | null> = { wait: null, hold: null, 'kill-grace': null, heartbeat: null };
  for (const name of names) {
    const text = values[name];
    if (text === undefined) continue;
    const ms = parseDuration(text);
    if (ms === null) return durationProblem(`--${name}`, text, 'expected milliseconds or e.g. 30s, 10m, 1h');
    durations[name] = ms;
  }
  // The protocol takes a hold of 0 ms: a lock that has expired when it is granted, so the command would be stopped at once.
  if (durations.hold === 0) {
    return `--hold ${JSON.stringify(values.hold)}: expected a duration above 0, e.g. 30s, 10m; leave --hold out for a lock that does not expire`;
  }
  const meta = metaFor(program, values.meta);
  if (typeof meta === 'string') return meta;
  const connectTimeout = connectDeadlineOf(values);
  if (typeof connectTimeout === 'string') return connectTimeout;
  // --wait bounds the whole wait for the lock, connecting included; --wait 0 (try once) still has to connect.
  const wait = durations.wait;
  const connectDeadline = wait !== null && wait > 0 && wait < connectTimeout.ms ? { ms: wait, flag: '--wait' } : connectTimeout;
  return {
    key: values.key,
    wait: durations.wait,
    hold: durations.hold,
    shared: values.shared === true,
    killGrace: durations['kill-grace'] ?? DEFAULT_KILL_GRACE_MS,
    heartbeat: durations.heartbeat ?? DEFAULT_HEARTBEAT_MS,
    meta,
    command: [program, ...programArgs],
    flags: { url: values.url, token: values.token, 'connect-timeout': values['connect-timeout'] },
    connectDeadline,
  };
}

/** The exit code of a child that ended with `code` or `signal`. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const number = signal === null ? undefined : osConstants.signals[signal];
  return 128 + (number ?? 0);
}

/**
 * Runs the command under the lease; resolves the exit code. `silence`
 * aborts when the server stopped answering pings: a loss too.
 */
async function supervise(io: ToolIo, run: RunPlan, lease: Lease, silence: AbortSignal, signals: SignalRoute): Promise<number> {
  if (lease.signal.aborted) {
    // Granted and lost in one read: the lock is someone else's already.
    io.stderr.write(`lockwire run: ${describeError(lease.signal.reason)}; the command was not started\n`);
    return ToolExit.LockLost;
  }
  const ownGroup = !isatty(0);
  const command = startCommand({
    command: run.command,
    env: { ...io.env, [FENCING_TOKEN_ENV]: String(lease.token), LOCKWIRE_KEY: run.key },
    ownGroup,
    killGrace: run.killGrace,
  });
  const stopJobControl = ownGroup ? followJobControl(command) : () => undefined;
  let lost = false;
  const onLost = () => {
    if (lost) return;
    lost = true;
    const why = lease.signal.aborted
      ? describeError(lease.signal.reason)
      : `lock ${JSON.stringify(run.key)} presumed lost: ${describeError(silence.reason)}`;
    io.stderr.write(`lockwire run: ${why}; stopping the command\n`);
    command.stop();
  };
  signals.route((signal) => {
    if (!ownGroup && TERMINAL_SIGNALS.has(signal)) return;
    command.signal(signal);
  });
  lease.signal.addEventListener('abort', onLost, { once: true });
  silence.addEventListener('abort', onLost, { once: true });
  if (lease.signal.aborted || silence.aborted) onLost();
  try {
    const end = await command.ended;
    if ('error' in end) {
      io.stderr.write(`lockwire run: cannot start ${JSON.stringify(run.command[0])}: ${describeError(end.error)}\n`);
      return 127;
    }
    return lost ? ToolExit.LockLost : exitCodeOf(end.code, end.signal);
  } finally {
    // From here to the exit, signals are ignored: the tool releases the lock and exits with the command's code.
    signals.route(() => undefined);
    stopJobControl();
    lease.signal.removeEventListener('abort', onLost);
    silence.removeEventListener('abort', onLost);
  }
}

/** Holds the lease while the command runs, then releases it (unless the server went silent); resolves the exit code. */
async function runHeld(io: ToolIo, run: RunPlan, client: LockClient, lease: Lease, signals: SignalRoute): Promise<number> {
  const heartbeat = checkConnection(client, run.heartbeat);
  try {
    return await supervise(io, run, lease, heartbeat.signal, signals);
  } finally {
    heartbeat.stop();
    // A server that stopped answering will not answer the release either; closing the client ends the session.
    if (!heartbeat.signal.aborted) await settleWithin(lease.release(), RELEASE_WAIT_MS);
  }
}

/**
 * Runs `lockwire run ARGS`: acquires the key, runs the command while it is
 * held, releases it, and resolves the exit code (see {@link RUN_USAGE}).
 */
export async function runCommand(args: string[], io: ToolIo): Promise<number> {
  const run = plan(args);
  if (run === 'help') {
    io.stdout.write(RUN_USAGE);
    return ToolExit.Ok;
  }
  if (typeof run === 'string') return usageFailure(io, 'run', RUN_USAGE, run);
  const connecting = performance.now();
  const client = await connectOrReport(io, 'run', run.flags, run.connectDeadline);
  if (typeof client === 'number') return client;
  // The time connecting took counts against --wait; what is left of it (0: try once) is the wait in the queue.
  const wait = run.wait === null ? null : Math.max(0, Math.floor(run.wait - (performance.now() - connecting)));
  const signals = listenForSignals();
  // The tool writes only messages (to stderr): a reader that went away must not kill it with the command left running.
  const stopOutputCheck = onOutputClosed(io, () => undefined);
  try {
    let acquired;
    try {
      acquired = await waitForLock(client, { ...run, wait }, signals);
    } catch (error) {
      io.stderr.write(`lockwire run: cannot acquire ${JSON.stringify(run.key)}: ${describeError(error)}\n`);
      return exitCodeFor(error);
    }
    if (acquired.kind === 'granted') return await runHeld(io, run, client, acquired.lease, signals);
    // A lease granted as the wait was given up: the command is not started. A silent server would not
    // answer the release; closing the client ends the session, and the lock with it.
    if (acquired.lease !== null && acquired.kind !== 'silent') await settleWithin(acquired.lease.release(), RELEASE_WAIT_MS);
    if (acquired.kind === 'interrupted') return exitCodeOf(null, acquired.signal);
    if (acquired.kind === 'silent') {
      io.stderr.write(`lockwire run: gave up waiting for ${JSON.stringify(run.key)}: ${describeError(acquired.reason)}\n`);
      return ToolExit.Unavailable;
    }
    io.stderr.write(`lockwire run: lock ${JSON.stringify(run.key)} not acquired within the --wait time\n`);
    return ToolExit.NotAcquired;
  } finally {
    await closeTool(client);
    signals.stop();
    stopOutputCheck();
  }
}
