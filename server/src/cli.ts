import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino } from 'pino';
import {
  CONFIG_KEYS,
  ConfigError,
  configOptions,
  configSources,
  defaultsLayer,
  envLayer,
  flagLayer,
  redisTlsFromConfig,
  resolveConfig,
  serverOptionsFromConfig,
} from './config.js';
import { settleWithin } from './cli-connect.js';
import { tokenCommand } from './cli-token.js';
import { runCommand } from './cli-run.js';
import { statusCommand } from './cli-status.js';
import { watchCommand } from './cli-watch.js';
import { CONFIG_FILE_ENV, CONFIG_FILE_FLAG, readConfigFile } from './config-file.js';
import { listenProblem } from './config-listen.js';
import { storeProblem } from './config-store.js';
import { createLockMetrics } from './metrics.js';
import { createRedisStore } from './redis/redis-store.js';
import { createLockServer } from './server.js';

/** Where the CLI reads and writes; the process's own by default, replaceable in tests. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env: Readonly<Record<string, string | undefined>>;
  /** Calls `handler` once on SIGTERM or SIGINT; returns a function that stops listening. */
  onStopSignal(handler: () => void): () => void;
}

const processIo: CliIo = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onStopSignal(handler) {
    process.once('SIGTERM', handler);
    process.once('SIGINT', handler);
    return () => {
      process.off('SIGTERM', handler);
      process.off('SIGINT', handler);
    };
  },
};

const EXIT_OK = 0;
/** A failure to start that no setting explains (a Redis that cannot be reached, say). */
const EXIT_FAILURE = 1;
/** Bad usage or a setting the operator must fix. */
const EXIT_USAGE = 2;

const MAIN_USAGE = `Usage: lockwire <command> [options]

Commands:
  serve    start a lock server (lockwire serve --help for its options)
  token    print a signed access token (lockwire token --help)
  run      run a command while holding a lock, like flock(1) (lockwire run --help)
  status   print the locked keys, their holders and queues (lockwire status --help)
  watch    print lock events as they happen (lockwire watch --help)

Options:
  -h, --help    show this help
`;

function serveUsage(): string {
  const rows = CONFIG_KEYS.map((key): [string, string] => {
    const option: { flag: string; arg: string; help: string; env: string; envAlias?: string; default: unknown } =
      configOptions[key];
    const env = option.envAlias ? `${option.env} or ${option.envAlias}` : option.env;
    return [`--${option.flag} ${option.arg}`, `${option.help} (env ${env}, default ${option.default === '' ? 'none' : String(option.default)})`];
  });
  rows.unshift([
    `--${CONFIG_FILE_FLAG} FILE`,
    `read settings from a JSON object with the camelCase names, e.g. {"port": 7311, "logLevel": "warn"} (env ${CONFIG_FILE_ENV})`,
  ]);
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  const lines = rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`);
  return `Usage: lockwire serve [options]

Starts a lockwire server. Flags override environment variables, which
override the config file, which overrides the defaults; an empty flag or
variable counts as not given. SIGTERM or SIGINT
drains the server (see --drain-delay, --shutdown-timeout) and exits 0; a
second signal during the drain exits at once. A setting to fix (an invalid
value, a port in use, a host not on this machine) exits 2; any other failure
to start (a Redis that cannot be reached) exits 1.

Options:
${lines.join('\n')}
`;
}

function serveArgsConfig(): ParseArgsConfig['options'] {
  const options: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    [CONFIG_FILE_FLAG]: { type: 'string' },
  };
  for (const key of CONFIG_KEYS) {
    const option: { flag: string; multiple?: boolean } = configOptions[key];
    options[option.flag] = option.multiple ? { type: 'string', multiple: true } : { type: 'string' };
  }
  return options;
}

function usageError(io: CliIo, usage: string, problem: string): number {
  // One problem a line (a ConfigError lists every bad setting), each prefixed, as grep-able log lines.
  const lines = problem.split('\n').map((line) => `lockwire: ${line}\n`);
  io.stderr.write(`${lines.join('')}\n${usage}`);
  return EXIT_USAGE;
}

async function serve(args: string[], io: CliIo): Promise<number> {
  let flags: Record<string, unknown>;
  try {
    flags = parseArgs({ args, options: serveArgsConfig(), strict: true, allowPositionals: false }).values;
  } catch (error) {
    return usageError(io, serveUsage(), error instanceof Error ? error.message : String(error));
  }
  if (flags['help'] === true) {
    io.stdout.write(serveUsage());
    return EXIT_OK;
  }
  let config;
  let options;
  let describe;
  let redisTls;
  const warnings: string[] = [];
  try {
    // An empty --config, or one of blanks only, counts as not given, as every other setting does:
    // LOCKWIRE_CONFIG then decides (and the same of it: the defaults).
    const given = (value: unknown) => (typeof value === 'string' && value.trim() !== '' ? value : undefined);
    const file = given(flags[CONFIG_FILE_FLAG]) ?? given(io.env[CONFIG_FILE_ENV]);
    const fileLayers = file !== undefined ? [readConfigFile(file)] : [];
    const layers = [defaultsLayer(), ...fileLayers, envLayer(io.env), flagLayer(flags)];
    config = resolveConfig(layers);
    describe = configSources(layers);
    options = serverOptionsFromConfig(config, { describe, warn: (message) => warnings.push(message) });
    redisTls = redisTlsFromConfig(config, { describe });
  } catch (error) {
    if (error instanceof ConfigError) return usageError(io, serveUsage(), error.message);
    throw error;
  }

  const logger = pino({ name: 'lockwire', level: config.logLevel }, pino.destination({ dest: 2, sync: true }));
  for (const warning of warnings) logger.warn({}, warning);
  const metrics = createLockMetrics();
  const store =
    config.store === 'memory'
      ? undefined
      : createRedisStore({
          url: config.redisUrl,
          cluster: config.store === 'redis-cluster',
          tls: redisTls,
          namespace: config.redisNamespace,
          nodeTtl: config.nodeTtl,
          connections: config.redisConnections,
          limits: options.limits,
          logger,
          observeScript: metrics.observeScript,
        });
  let server;
  try {
    server = await createLockServer({ ...options, logger, metrics, ...(store ? { store } : {}) });
  } catch (error) {
    // The server closes its store when the listen fails, but not when the
    // store's own start fails half way; closing twice is harmless.
    // Bounded: a store that stopped answering must not keep a failed start from exiting.
    if (store) await settleWithin(store.close(), config.shutdownTimeout);
    const problem = listenProblem(error, config, describe);
    if (problem !== undefined) {
      io.stderr.write(`lockwire: ${problem}\n`);
      return EXIT_USAGE;
    }
    // Not a setting to fix (Redis may be back on the next try), but reported as one is: a line, no stack.
    const unstarted = storeProblem(error, config, describe);
    if (unstarted !== undefined) {
      io.stderr.write(`lockwire: ${unstarted}\n`);
      return EXIT_FAILURE;
    }
    io.stderr.write(`lockwire: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_FAILURE;
  }
  io.stdout.write(`lockwire listening on ${server.url}\n`);

  await new Promise<void>((resolve) => {
    const stop = io.onStopSignal(() => {
      stop();
      logger.info({ drainDelay: config.drainDelay, shutdownTimeout: config.shutdownTimeout }, 'stop signal received; draining');
      resolve();
    });
  });
  await server.close();
  return EXIT_OK;
}

/**
 * Runs the `lockwire` command with `argv` (without node and the script) and
 * resolves its exit code: 0 on success and after a drained stop; 2 on bad
 * usage or a setting to fix (with the problem on stderr: an invalid value
 * with the usage, a host or port that cannot be listened on as one line);
 * 1 when `serve` fails to start for another reason (the error on stderr: a
 * store that failed to start as one line naming the Redis URL, redacted),
 * with its store closed either way. `serve` resolves only after a stop
 * signal or a failed start.
 */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '-h' || command === '--help' || command === 'help') {
    io.stdout.write(MAIN_USAGE);
    return EXIT_OK;
  }
  if (command === 'serve') return serve(rest, io);
  if (command === 'token') return tokenCommand(rest, { ...io, now: () => Date.now() });
  if (command === 'run') return runCommand(rest, io);
  if (command === 'status') return statusCommand(rest, io);
  if (command === 'watch') return watchCommand(rest, io);
  return usageError(io, MAIN_USAGE, command === undefined ? 'missing command' : `unknown command ${JSON.stringify(command)}`);
}
