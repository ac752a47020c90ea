import type { ListResult, LockStatus } from '@lockwire/client';
import {
  CONNECT_OPTIONS,
  CONNECT_USAGE,
  answerWithin,
  closeTool,
  connectDeadlineOf,
  connectOrReport,
  describeError,
  formatDuration,
  onOutputClosed,
  parseToolFlags,
  usageFailure,
  type ToolIo,
} from './cli-connect.js';
import { exitCodeFor, ToolExit } from './cli-exit.js';

export const STATUS_USAGE = `Usage: lockwire status [options]

Prints the locked keys: one row per holder with its session, fencing token,
how long it has held the lock, when the hold expires, the queue length and
the holder's meta. --json prints the list as GET /v1/locks gives it
({"locks": [...], "truncated": bool}), for scripts.

--connect-timeout bounds each answer too: a server that welcomed the tool
and does not answer its list (or the ping for its clock) within it counts
as unavailable.

Exit status: 0; 69 when the server cannot be reached, does not answer the
connect or a request within --connect-timeout, or is draining or cannot
reach its store (HTTP 503 to the connect, shutting_down,
store_unavailable); 141 (as for SIGPIPE), with no message, when the reader
of the output went away; 1 when it refuses the token (HTTP 401: missing,
invalid or expired; HTTP 403), the connect otherwise (HTTP 404: the URL
is not /v1) or the request; 2 on bad usage (also a --url that is not a
ws:// or wss:// URL).

Options:
  --prefix P             only keys starting with P (default: all)
  --limit N              at most N keys, 1 to 10000 (default 1000)
  --json                 print JSON
${CONNECT_USAGE}

Durations are milliseconds, or a number with ms, s, m or h: 500ms, 5s, 1m.
`;

const HEADERS = ['KEY', 'MODE', 'SESSION', 'TOKEN', 'HELD FOR', 'EXPIRES IN', 'QUEUE', 'META'] as const;
/** Longest cell shown for keys and meta before it is shortened, so rows stay readable. */
const MAX_CELL = 48;

function shorten(text: string): string {
  return text.length > MAX_CELL ? `${text.slice(0, MAX_CELL - 1)}…` : text;
}

/** The rows of one key: one per holder (shared locks have several). */
function rowsOf(lock: LockStatus, now: number): string[][] {
  return lock.holders.map((holder) => [
    shorten(JSON.stringify(lock.key).slice(1, -1)),
    holder.mode,
    holder.session,
    String(holder.token),
    formatDuration(now - holder.since),
    holder.expiresAt === null ? '-' : formatDuration(holder.expiresAt - now),
    String(lock.queue.length),
    holder.meta === null ? '-' : shorten(JSON.stringify(holder.meta)),
  ]);
}

/**
 * Lays `result` out as an aligned table, times measured against `now` (the
 * server's clock, so a skewed local clock does not distort them).
 */
export function formatStatusTable(result: ListResult, now: number, prefix: string): string {
  const rows = result.locks.flatMap((lock) => rowsOf(lock, now));
  if (rows.length === 0) {
    return prefix === '' ? 'no locks held\n' : `no locks held under ${JSON.stringify(prefix)}\n`;
  }
  const table = [[...HEADERS], ...rows];
  const widths = HEADERS.map((_header, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  const lines = table.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
  if (result.truncated) lines.push(`(more locked keys than shown: raise --limit or narrow --prefix)`);
  return `${lines.join('\n')}\n`;
}

/** Runs `lockwire status ARGS`; resolves the exit code (see {@link STATUS_USAGE}). */
export async function statusCommand(args: string[], io: ToolIo): Promise<number> {
  const values = parseToolFlags(io, 'status', STATUS_USAGE, args, {
    ...CONNECT_OPTIONS,
    prefix: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (typeof values === 'number') return values;
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 10_000)) {
    return usageFailure(io, 'status', STATUS_USAGE, `--limit ${JSON.stringify(values.limit)}: expected an integer from 1 to 10000`);
  }
  const prefix = values.prefix ?? '';
  const deadline = connectDeadlineOf(values);
  if (typeof deadline === 'string') return usageFailure(io, 'status', STATUS_USAGE, deadline);
  const client = await connectOrReport(io, 'status', values, deadline);
  if (typeof client === 'number') return client;
  let outputClosed = false;
  const stopOutputCheck = onOutputClosed(io, () => {
    outputClosed = true;
  });
  try {
    // A server that welcomed the tool and then stopped answering must not keep it waiting for ever.
    const result = await answerWithin(client.list({ prefix, ...(limit === undefined ? {} : { limit }) }), 'list', deadline);
    if (values.json === true) {
      // `heldByYou` would only ever describe this short-lived session; drop it as `GET /v1/locks` does.
      const locks = result.locks.map(({ heldByYou: _heldByYou, ...lock }) => lock);
      io.stdout.write(`${JSON.stringify({ locks, truncated: result.truncated }, null, 2)}\n`);
    } else {
      io.stdout.write(formatStatusTable(result, await answerWithin(client.ping(), 'ping', deadline), prefix));
    }
  } catch (error) {
    io.stderr.write(`lockwire status: ${describeError(error)}\n`);
    return exitCodeFor(error);
  } finally {
    await closeTool(client);
    stopOutputCheck();
  }
  // The write's failure is reported on a later tick: by now, after the close, it has been.
  return outputClosed ? ToolExit.OutputClosed : ToolExit.Ok;
}
