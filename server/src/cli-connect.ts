import { EventEmitter } from 'node:events';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MAX_DURATION_MS } from '@lockwire/protocol';
import { createWsTransport, LockClient } from '@lockwire/client';
import { WebSocket } from 'ws';
import { connectExitCodeFor, NoAnswerError, ToolExit, UpgradeRefusedError } from './cli-exit.js';
import { shownUrl } from './redact-url.js';

/** Where a client tool (`run`, `status`, `watch`) reads and writes. */
export interface ToolIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env: Readonly<Record<string, string | undefined>>;
}

/** The server a tool talks to when neither `--url` nor `LOCKWIRE_URL` names one. */
export const DEFAULT_URL = 'ws://127.0.0.1:7311/v1';

/**
 * How long a server has, by default, to complete the WebSocket handshake
 * and send its welcome: a server that accepts the TCP connection and then
 * says nothing (paused, overloaded, another service on the port) would
 * otherwise keep a tool waiting forever.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** `parseArgs` options every client tool takes. */
export const CONNECT_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  'connect-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Usage lines of {@link CONNECT_OPTIONS}. */
export const CONNECT_USAGE = `  --url URL              the server (env LOCKWIRE_URL, default ${DEFAULT_URL})
  --token TOKEN          sent as Authorization: Bearer (env LOCKWIRE_TOKEN)
  --connect-timeout DURATION
                         a server that has not completed the WebSocket
                         handshake and sent its welcome within this long
                         counts as unreachable: exit 69 (default 10s)
  -h, --help             show this help`;

/** The connect flags of a tool, as `parseArgs` gives them. */
export interface ConnectFlags {
  url?: string | undefined;
  token?: string | undefined;
  'connect-timeout'?: string | undefined;
}

/** How long the server has to answer a connect, and the flag that set it, named when it runs out. */
export interface ConnectDeadline {
  ms: number;
  flag: string;
}

/**
 * The deadline `--connect-timeout` sets ({@link DEFAULT_CONNECT_TIMEOUT_MS}
 * when not given or empty). A string is the usage problem: not a duration,
 * or 0, which would never connect.
 */
export function connectDeadlineOf(flags: ConnectFlags): ConnectDeadline | string {
  const text = flags['connect-timeout'];
  const flag = '--connect-timeout';
  if (text === undefined || text === '') return { ms: DEFAULT_CONNECT_TIMEOUT_MS, flag };
  const ms = parseDuration(text);
  if (ms === null || ms === 0) return durationProblem(flag, text, 'expected a duration above 0, e.g. 500ms, 5s, 1m');
  return { ms, flag };
}

/** Where to connect and with which credentials. */
export interface Endpoint {
  url: string;
  token: string | undefined;
}

/**
 * Flags over environment over the default. An empty value counts as not given. The token is taken without
 * the blanks around it: a variable set from a file's whole text (an env file, a secret mounted as a
 * variable) may keep the file's final newline, which a header cannot carry.
 */
export function endpointFrom(
  values: { url?: string | undefined; token?: string | undefined },
  env: ToolIo['env'],
): Endpoint {
  const url = values.url || env['LOCKWIRE_URL'] || DEFAULT_URL;
  const token = (values.token || env['LOCKWIRE_TOKEN'] || '').trim() || undefined;
  return { url, token };
}

/** What is wrong with `endpoint` before anything is sent (a mistake to fix, not worth trying again), or null. */
export function endpointProblem(endpoint: Endpoint): string | null {
  let url: URL;
  try {
    url = new URL(endpoint.url);
  } catch {
    return `--url (or LOCKWIRE_URL) ${JSON.stringify(shownUrl(endpoint.url))}: not a URL; expected e.g. ${DEFAULT_URL}`;
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol)) {
    return `--url (or LOCKWIRE_URL) ${JSON.stringify(shownUrl(endpoint.url))}: expected a ws:// or wss:// URL, e.g. ${DEFAULT_URL}`;
  }
  // A JWT is base64url text and dots: any other character (a control character, a blank inside) is a mistake.
  if (endpoint.token !== undefined && !/^[\x21-\x7e]+$/.test(endpoint.token)) {
    return 'the token (--token or LOCKWIRE_TOKEN) has characters a token cannot have (blanks, control characters or non-ASCII)';
  }
  return null;
}

/**
 * Connects to `endpoint`, sending the token as a bearer credential, with
 * reconnecting off. A server that has not completed the WebSocket handshake
 * and sent its welcome within `deadline.ms` counts as unreachable: the
 * connect rejects with an `Error` naming the deadline and `deadline.flag`,
 * and the socket is destroyed, so nothing keeps the process alive.
 *
 * @throws {@link UpgradeRefusedError} when the server answers the upgrade
 * with an HTTP status instead (401 for a missing, invalid or expired token,
 * 403, 503 while draining or at its connection cap...); the client's
 * `LockError` (`connection_closed`) when it cannot be reached or the
 * connection ends before the welcome; the deadline's `Error` when it does
 * not answer in time.
 */
export async function connectTool(endpoint: Endpoint, deadline: ConnectDeadline): Promise<LockClient> {
  const headers: Record<string, string> = endpoint.token ? { authorization: `Bearer ${endpoint.token}` } : {};
  const sockets: WebSocket[] = [];
  let refusedWith: number | undefined;
  // ws reports a refused upgrade only as an error message; its status decides whether trying again can help.
  const watchRefusal = (socket: WebSocket) =>
    socket.once('unexpected-response', (_request, response) => {
      refusedWith = response.statusCode;
      response.resume();
      // With this listener ws leaves the handshake to it: drop it, which reports an error and a close to the client.
      socket.terminate();
    });
  const controller = new AbortController();
  const timer = setTimeout(() => {
    const why = `the server did not complete the WebSocket handshake and send its welcome within ${formatDuration(deadline.ms)} (${deadline.flag})`;
    controller.abort(new Error(why));
    for (const socket of sockets) socket.terminate();
  }, deadline.ms);
  try {
    // A tool's run is one connection: a drop ends `run` (its lock went with it) and `watch` (exit 69),
    // which a supervisor or shell loop can restart, rather than carrying on silently.
    return await LockClient.connect(endpoint.url, {
      headers,
      reconnect: false,
      // The tools judge the connection themselves (`--heartbeat`, `--connect-timeout`), in their own terms.
      keepalive: false,
      signal: controller.signal,
      // The client keeps its socket private: a connect past its deadline must drop the socket at once,
      // without the closing handshake a server that sent no welcome would not answer either.
      transport: createWsTransport({
        headers,
        onSocket: (socket) => {
          sockets.push(socket);
          watchRefusal(socket);
        },
      }),
    });
  } catch (error) {
    throw refusedWith === undefined ? error : new UpgradeRefusedError(refusedWith);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects `command` (`run`, `status`, `watch`) as {@link connectTool} does,
 * to the endpoint its flags and environment name, within `deadline`. When
 * that fails it writes `lockwire <command>: cannot connect to <url>: <why>`
 * to stderr and resolves the exit code for the caller to exit with
 * ({@link connectExitCodeFor}: 1 for a refused token or a wrong path, 69
 * otherwise). A URL that is not a WebSocket URL, or a token with characters
 * no token has, exits {@link ToolExit.Usage} without connecting.
 */
export async function connectOrReport(
  io: ToolIo,
  command: string,
  flags: ConnectFlags,
  deadline: ConnectDeadline,
): Promise<LockClient | number> {
  const endpoint = endpointFrom(flags, io.env);
  const problem = endpointProblem(endpoint);
  if (problem !== null) {
    io.stderr.write(`lockwire ${command}: ${problem}\n`);
    return ToolExit.Usage;
  }
  try {
    return await connectTool(endpoint, deadline);
  } catch (error) {
    const shown = shownUrl(endpoint.url);
    const why = describeError(error).split(endpoint.url).join(shown);
    io.stderr.write(`lockwire ${command}: cannot connect to ${shown}: ${why}\n`);
    return connectExitCodeFor(error);
  }
}

/**
 * Checks that the server still answers while `lockwire run`'s command runs:
 * a `ping` every `intervalMs`, and one not answered within `intervalMs` (or
 * refused) aborts `signal`, with the reason. A silent network path (half
 * open: nothing arrives and nothing closes) is noticed within about twice
 * `intervalMs`. The deadline is judged only after the event loop read the
 * input that already arrived, so the tool's own stall does not count as the
 * server's silence. `intervalMs` 0 never aborts. Call `stop()` when done.
 */
export function checkConnection(
  client: LockClient,
  intervalMs: number,
): { signal: AbortSignal; stop(): void } {
  const controller = new AbortController();
  let stopped = false;
  let next: ReturnType<typeof setTimeout> | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const fail = (reason: Error) => {
    if (!stopped) controller.abort(reason);
  };
  const probe = () => {
    let answered = false;
    deadline = setTimeout(
      () =>
        setImmediate(() => {
          if (!answered) fail(new Error(`the server did not answer a ping within ${formatDuration(intervalMs)}`));
        }),
      intervalMs,
    );
    client.ping().then(
      () => {
        answered = true;
        clearTimeout(deadline);
        if (!stopped && !controller.signal.aborted) next = setTimeout(probe, intervalMs);
      },
      (error: unknown) => {
        answered = true;
        clearTimeout(deadline);
        fail(new Error(`the ping to the server failed: ${describeError(error)}`));
      },
    );
  };
  if (intervalMs > 0) next = setTimeout(probe, intervalMs);
  return {
    signal: controller.signal,
    stop() {
      stopped = true;
      clearTimeout(next);
      clearTimeout(deadline);
    },
  };
}

/**
 * Calls `handler` once when the tool's stdout or stderr fails: EPIPE when
 * the reader went away (`lockwire watch | head -1`), or any other write
 * error. Unlistened, such a failure is an unhandled 'error' event that kills
 * the tool with a stack trace. Streams that are not event emitters (a
 * test's fakes) are not listened to. Returns a function that stops
 * listening; call it only once nothing more is written.
 */
export function onOutputClosed(io: ToolIo, handler: (error: unknown) => void): () => void {
  const streams = [io.stdout, io.stderr].filter((stream) => stream instanceof EventEmitter);
  let failed = false;
  const listener = (error: unknown) => {
    if (failed) return;
    failed = true;
    handler(error);
  };
  for (const stream of streams) stream.on('error', listener);
  return () => {
    for (const stream of streams) stream.off('error', listener);
  };
}

/**
 * How long a tool waits for its connection's closing handshake before it
 * exits anyway: a server that stopped answering (paused, or a silent path)
 * never completes it, and `ws` would wait 30 s for it.
 */
export const CLOSE_WAIT_MS = 1000;

/**
 * Closes a tool's client, waiting at most {@link CLOSE_WAIT_MS} for the
 * closing handshake; never rejects. The process exits right after, which
 * ends a socket still closing.
 */
export function closeTool(client: LockClient): Promise<void> {
  return settleWithin(client.close(), CLOSE_WAIT_MS);
}

/** Resolves when `promise` settles or after `ms`, whichever is first; never rejects. */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** Writes `lockwire <command>: <problem>` with the usage to stderr; resolves the usage exit code. */
export function usageFailure(io: ToolIo, command: string, usage: string, problem: string): number {
  io.stderr.write(`lockwire ${command}: ${problem}\n\n${usage}`);
  return ToolExit.Usage;
}

/** The flag definitions `parseArgs` takes. */
type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** The flags `parseArgs` reads with `options`, strictly and without positionals. */
export type ToolFlags<O extends FlagOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>['values'];

/**
 * A tool's flags, or its exit code once it has answered them itself: with
 * its usage on stdout for `--help` (0), or on stderr after the problem for
 * a flag it does not take or one missing its value (2). The tool's own
 * checks of the values come after.
 */
export function parseToolFlags<O extends FlagOptions & { help: { type: 'boolean' } }>(
  io: ToolIo,
  command: string,
  usage: string,
  args: string[],
  options: O,
): ToolFlags<O> | number {
  let values: ToolFlags<O>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (error) {
    return usageFailure(io, command, usage, describeError(error));
  }
  if ((values as { help?: boolean }).help === true) {
    io.stdout.write(usage);
    return ToolExit.Ok;
  }
  return values;
}

/**
 * Resolves what `request` resolves, or rejects with a {@link NoAnswerError}
 * naming `what` and `deadline.flag` when it has not settled within
 * `deadline.ms`. The request's own later failure (the client closing) is
 * then handled here, so nothing is left unhandled.
 */
export async function answerWithin<T>(request: Promise<T>, what: string, deadline: ConnectDeadline): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      request,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          const why = `the server did not answer the ${what} within ${formatDuration(deadline.ms)} (${deadline.flag})`;
          reject(new NoAnswerError(why));
        }, deadline.ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The one-line message of anything thrown. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Milliseconds of a duration flag: a bare number is milliseconds; `ms`, `s`,
 * `m` and `h` suffixes scale it (`1.5s` is 1500). Null when the text is not
 * a duration or exceeds the protocol's largest (2147483647 ms).
 */
export function parseDuration(text: string): number | null {
  const ms = Math.round(unboundedDuration(text));
  return Number.isFinite(ms) && ms <= MAX_DURATION_MS ? ms : null;
}

/** The milliseconds `text` says, however many; NaN when it is not a duration. */
function unboundedDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match?.[1]) return Number.NaN;
  return Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1);
}

/**
 * What is wrong with `text` as the duration of `flag`, for a usage error: over the longest duration
 * (2147483647 ms, about 24.8 days, what a timer can wait), or not a duration at all (`expected`).
 */
export function durationProblem(flag: string, text: string, expected: string): string {
  const why = unboundedDuration(text) > MAX_DURATION_MS ? `at most ${MAX_DURATION_MS}ms (about 24 days)` : expected;
  return `${flag} ${JSON.stringify(text)}: ${why}`;
}

/** A duration for humans: `850ms`, `42s`, `3m07s`, `2h05m`. */
export function formatDuration(ms: number): string {
  const clamped = Math.max(0, Math.round(ms));
  if (clamped < 1000) return `${clamped}ms`;
  const seconds = Math.floor(clamped / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
