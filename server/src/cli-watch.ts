import type { LockEvent, LockStatus } from '@lockwire/client';
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
  parseToolFlags,
  usageFailure,
  type ToolIo,
} from './cli-connect.js';
import { exitCodeFor, ToolExit } from './cli-exit.js';

/** What `lockwire watch` needs beyond output: a way to be stopped. */
export interface WatchIo extends ToolIo {
  /** Calls `handler` once on SIGTERM or SIGINT; returns a function that stops listening. */
  onStopSignal(handler: () => void): () => void;
}

export const WATCH_USAGE = `Usage: lockwire watch [options]

Prints the locked keys, then one line per lock event (acquired, released,
expired, stolen, revoked, queued, dequeued) as it happens, until Ctrl-C.
--json prints JSON lines instead: first {"type":"snapshot","locks":[...],
"truncated":bool}, then each event as the server sends it ({"type":"event",
"key":..., "event":..., "session":..., "token":..., "mode":..., "meta":...,
"holders":N, "waiters":N, "at":epoch-ms}).

The tool pings the server every --heartbeat; a ping not answered within
--heartbeat means the server stopped answering (paused, or behind a silent
network path, which closes nothing): exit 69, so a silent watch is not
mistaken for a quiet one.

Exit status: 0 after Ctrl-C (SIGINT) or SIGTERM, within about 1 s even when
the server stopped answering; 141 (as for SIGPIPE), with no message, at
its next write after the reader of the output went away (lockwire watch |
head -1 ends at the next lock event: a pipe reports a closed reader only
to a write); 69 when the server cannot be reached, does not answer the
connect within --connect-timeout, does not answer a ping within
--heartbeat, the connection ends, or the server is draining or cannot
reach its store (HTTP 503 to the connect, shutting_down,
store_unavailable); 1 when it refuses the token (HTTP 401: missing, invalid or expired; HTTP 403), the
connect otherwise (HTTP 404: the URL is not /v1) or the watch; 2 on bad usage (also a --url that is not
a ws:// or wss:// URL).

Options:
  --prefix P             only keys starting with P (default: all)
  --json                 print JSON lines
  --heartbeat DURATION   ping interval and deadline (default 5s; 0: no pings,
                         a silent path goes unnoticed)
${CONNECT_USAGE}

Durations are milliseconds, or a number with ms, s, m or h: 500ms, 5s, 1m.
`;

/**
 * Ping interval and deadline: a silent path is noticed within about 10 s,
 * about when the server's default heartbeat (10 s) gives up on the
 * connection too.
 */
const DEFAULT_HEARTBEAT_MS = 5000;

function quoted(key: string): string {
  return JSON.stringify(key);
}

/** One human line for a held key of the snapshot. */
export function formatSnapshotLine(lock: LockStatus): string[] {
  return lock.holders.map(
    (holder) =>
      `held      ${quoted(lock.key)} session=${holder.session} token=${holder.token} mode=${holder.mode}` +
      ` queue=${lock.queue.length}${holder.meta === null ? '' : ` meta=${JSON.stringify(holder.meta)}`}`,
  );
}

/** One human line for an event: time, what happened, the key, then who and the counts after it. */
export function formatEventLine(event: LockEvent): string {
  const time = new Date(event.at).toISOString().slice(11, 23);
  const token = event.token === undefined || event.token === null ? '' : ` token=${event.token}`;
  const meta = event.meta === null ? '' : ` meta=${JSON.stringify(event.meta)}`;
  return (
    `${time}  ${event.event.padEnd(9)} ${quoted(event.key)} session=${event.session}${token} mode=${event.mode}` +
    ` holders=${event.holders} waiters=${event.waiters}${meta}`
  );
}

/** Runs `lockwire watch ARGS` until a stop signal or the connection ends; resolves the exit code. */
export async function watchCommand(args: string[], io: WatchIo): Promise<number> {
  const values = parseToolFlags(io, 'watch', WATCH_USAGE, args, {
    ...CONNECT_OPTIONS,
    prefix: { type: 'string' },
    json: { type: 'boolean' },
    heartbeat: { type: 'string' },
  });
  if (typeof values === 'number') return values;
  const json = values.json === true;
  const prefix = values.prefix ?? '';
  const heartbeat = values.heartbeat === undefined ? DEFAULT_HEARTBEAT_MS : parseDuration(values.heartbeat);
  if (heartbeat === null) {
    const problem = durationProblem('--heartbeat', values.heartbeat ?? '', 'expected milliseconds or e.g. 5s, 1m');
    return usageFailure(io, 'watch', WATCH_USAGE, problem);
  }
  const deadline = connectDeadlineOf(values);
  if (typeof deadline === 'string') return usageFailure(io, 'watch', WATCH_USAGE, deadline);
  const client = await connectOrReport(io, 'watch', values, deadline);
  if (typeof client === 'number') return client;
  // The client notices a connection that closes, not one that goes silent: without pings, a half-open
  // path would leave the tool running, printing nothing, for ever.
  const liveness = checkConnection(client, heartbeat);
  let onSilent: (() => void) | undefined;
  let stopListening: (() => void) | undefined;
  let stopOutputCheck: (() => void) | undefined;
  let onEnded: (() => void) | undefined;
  let watchSignal: AbortSignal | undefined;
  try {
    // Stopped by a signal, or by the reader of the output going away (`| head -1`), quietly either way.
    const stopped = new Promise<number>((resolve) => {
      stopListening = io.onStopSignal(() => resolve(ToolExit.Ok));
      stopOutputCheck = onOutputClosed(io, () => resolve(ToolExit.OutputClosed));
      onSilent = () => {
        io.stderr.write(`lockwire watch: ${describeError(liveness.signal.reason)}\n`);
        resolve(ToolExit.Unavailable);
      };
      liveness.signal.addEventListener('abort', onSilent, { once: true });
    });
    const print = (event: LockEvent) =>
      io.stdout.write(json ? `${JSON.stringify({ type: 'event', ...event })}\n` : `${formatEventLine(event)}\n`);
    // Events can arrive in the same read as the watch's reply: hold them until the snapshot is out.
    let early: LockEvent[] | undefined = [];
    const watching = client.watch(prefix, (event) => (early ? early.push(event) : print(event)));
    // A server that stopped answering never answers the watch either: Ctrl-C must not wait for it.
    const first = await Promise.race([watching, stopped]);
    if (typeof first === 'number') {
      watching.catch(() => undefined);
      return first;
    }
    const watch = first;
    if (json) {
      // `heldByYou` would only ever describe this short-lived session: dropped, as `status --json` and
      // `GET /v1/locks` do, so the snapshot's locks read the same as theirs.
      const locks = watch.snapshot.locks.map(({ heldByYou: _heldByYou, ...lock }) => lock);
      io.stdout.write(`${JSON.stringify({ type: 'snapshot', ...watch.snapshot, locks })}\n`);
    } else {
      const lines = watch.snapshot.locks.flatMap(formatSnapshotLine);
      if (watch.snapshot.truncated) lines.push('(more locked keys than shown in the snapshot)');
      io.stdout.write(lines.map((line) => `${line}\n`).join(''));
      io.stderr.write(`watching ${prefix === '' ? 'every key' : `keys under ${quoted(prefix)}`}; Ctrl-C to stop\n`);
    }
    for (const event of early) print(event);
    early = undefined;
    watchSignal = watch.signal;
    const ended = new Promise<number>((resolve) => {
      onEnded = () => {
        io.stderr.write(`lockwire watch: ${describeError(watch.signal.reason)}\n`);
        resolve(ToolExit.Unavailable);
      };
      watch.signal.addEventListener('abort', onEnded, { once: true });
    });
    return await Promise.race([stopped, ended]);
  } catch (error) {
    io.stderr.write(`lockwire watch: ${describeError(error)}\n`);
    return exitCodeFor(error);
  } finally {
    stopListening?.();
    liveness.stop();
    if (onSilent) liveness.signal.removeEventListener('abort', onSilent);
    if (onEnded) watchSignal?.removeEventListener('abort', onEnded);
    await closeTool(client);
    stopOutputCheck?.();
  }
}
