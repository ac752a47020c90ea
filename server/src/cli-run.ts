import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants, hostname } from 'node:os';
import { parseArgs } from 'node:util';
import type { Lease, LockClient } from '@lockwire/client';
import {
  CONNECT_OPTIONS,
  CONNECT_USAGE,
  ToolExit,
  connectOrReport,
  describeError,
  exitCodeFor,
  parseDuration,
  usageFailure,
  type ToolIo,
} from './cli-connect.js';

/** The child's environment variable that carries the lock's fencing token. */
export const FENCING_TOKEN_ENV = 'LOCKWIRE_FENCING_TOKEN';

export const RUN_USAGE = `Usage: lockwire run --key KEY [options] -- COMMAND [ARGS...]

Runs COMMAND while holding the lock KEY on a lockwire server, like flock(1)
across machines. The command inherits stdin, stdout and stderr, and gets the
lock's fencing token in ${FENCING_TOKEN_ENV} (and the key in LOCKWIRE_KEY).
The lock is released when the command exits.

Exit status: the command's (128+N when killed by signal N); 75 when the lock
was not granted within --wait; 70 when the lock was lost while the command
ran (expired, stolen, revoked or connection lost: the command is sent
SIGTERM, then SIGKILL after --kill-grace); 69 when the server cannot be
reached; 1 when the server refuses the request; 127 when the command
cannot be started; 2 on bad usage.

Options:
  --key KEY              the lock to hold (required)
  --wait DURATION        give up after waiting this long (default: wait forever)
  --hold DURATION        the lock expires this long after the grant (default: never)
  --shared               take a shared lock instead of an exclusive one
  --kill-grace DURATION  time between SIGTERM and SIGKILL on loss (default 5s)
${CONNECT_USAGE}

Durations are milliseconds, or a number with ms, s, m or h: 30s, 10m, 1h.
`;

const DEFAULT_KILL_GRACE_MS = 5000;
/** SIGINT, SIGTERM and SIGHUP sent to \`lockwire run\` go on to the command. */
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** Meta is capped at 1024 bytes on the wire; the command line is shown shortened. */
const MAX_COMMAND_META = 200;

interface RunPlan {
  key: string;
  wait: number | null;
  hold: number | null;
  shared: boolean;
  killGrace: number;
  command: [string, ...string[]];
  flags: { url?: string | undefined; token?: string | undefined };
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
      },
    }));
  } catch (error) {
    return describeError(error);
  }
  if (values.help === true) return 'help';
  if (values.key === undefined) return '--key is required';
  const [program, ...programArgs] = command;
  if (program === undefined || program === '') return 'missing the command: lockwire run --key KEY -- COMMAND';
  const durations: Record<'wait' | 'hold' | 'kill-grace', number | null> = { wait: null, hold: null, 'kill-grace': null };
  for (const name of ['wait', 'hold', 'kill-grace'] as const) {
    const text = values[name];
    if (text === undefined) continue;
    const ms = parseDuration(text);
    if (ms === null) return `--${name} ${JSON.stringify(text)}: expected milliseconds or e.g. 30s, 10m, 1h`;
    durations[name] = ms;
  }
  return {
    key: values.key,
    wait: durations.wait,
    hold: durations.hold,
    shared: values.shared === true,
    killGrace: durations['kill-grace'] ?? DEFAULT_KILL_GRACE_MS,
    command: [program, ...programArgs],
    flags: { url: values.url, token: values.token },
  };
}

/** The exit code of a child that ended with `code` or `signal`. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const number = signal === null ? undefined : osConstants.signals[signal];
  return 128 + (number ?? 0);
}

/** Calls `onSignal` for each SIGINT, SIGTERM or SIGHUP; the returned function removes the listeners. */
function listenForSignals(onSignal: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of FORWARDED_SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, onSignal);
  };
}

/**
 * Waits for the lock; resolves the lease, `null` when `--wait` ran out, or
 * the name of a signal that interrupted the wait.
 */
async function acquire(client: LockClient, run: RunPlan): Promise<Lease | null | NodeJS.Signals> {
  const controller = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const stop = listenForSignals((signal) => {
    interrupted = signal;
    controller.abort();
  });
  try {
    return await client.acquire(run.key, {
      mode: run.shared ? 'shared' : 'exclusive',
      acquireTimeout: run.wait,
      holdTimeout: run.hold,
      meta: { host: hostname(), pid: process.pid, command: run.command.join(' ').slice(0, MAX_COMMAND_META) },
      signal: controller.signal,
    });
  } catch (error) {
    if (interrupted !== undefined) return interrupted;
    throw error;
  } finally {
    stop();
  }
}

/** Runs the command under the lease; resolves the exit code. */
function supervise(io: ToolIo, run: RunPlan, lease: Lease): Promise<number> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(run.command[0], run.command.slice(1), {
        stdio: 'inherit',
        env: { ...io.env, [FENCING_TOKEN_ENV]: String(lease.token), LOCKWIRE_KEY: run.key },
      });
    } catch (error) {
      io.stderr.write(`lockwire run: cannot start ${JSON.stringify(run.command[0])}: ${describeError(error)}\n`);
      resolve(127);
      return;
    }
    let lost = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const stopSignals = listenForSignals((signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
    const onLost = () => {
      lost = true;
      io.stderr.write(`lockwire run: ${describeError(lease.signal.reason)}; stopping the command\n`);
      child.kill('SIGTERM');
      // A command that ignores SIGTERM must still not outlive its lock for long.
      killTimer = setTimeout(() => child.kill('SIGKILL'), run.killGrace);
    };
    lease.signal.addEventListener('abort', onLost, { once: true });
    const finish = (code: number) => {
      clearTimeout(killTimer);
      stopSignals();
      lease.signal.removeEventListener('abort', onLost);
      resolve(code);
    };
    child.once('error', (error) => {
      io.stderr.write(`lockwire run: cannot start ${JSON.stringify(run.command[0])}: ${describeError(error)}\n`);
      finish(127);
    });
    child.once('exit', (code, signal) => finish(lost ? ToolExit.LockLost : exitCodeOf(code, signal)));
  });
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
  const client = await connectOrReport(io, 'run', run.flags);
  if (client === null) return ToolExit.Unavailable;
  try {
    let lease;
    try {
      lease = await acquire(client, run);
    } catch (error) {
      io.stderr.write(`lockwire run: cannot acquire ${JSON.stringify(run.key)}: ${describeError(error)}\n`);
      return exitCodeFor(error);
    }
    if (lease === null) {
      io.stderr.write(`lockwire run: lock ${JSON.stringify(run.key)} not acquired within the --wait time\n`);
      return ToolExit.NotAcquired;
    }
    if (typeof lease === 'string') return exitCodeOf(null, lease);
    try {
      return await supervise(io, run, lease);
    } finally {
      await lease.release().catch(() => undefined);
    }
  } finally {
    await client.close();
  }
}
