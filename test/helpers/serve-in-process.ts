import { main, type CliIo } from '../../server/src/cli.js';

/** Default bound on a start (listening or exiting) and on a stop. */
const DEFAULT_WAIT_MS = 5000;

/**
 * One `lockwire serve` run in process. `exit` is its code when it stopped
 * before listening, else null and `url` is the WebSocket URL it printed.
 * `stdout` and `stderr` keep growing while it runs.
 */
export interface ServeRun {
  readonly exit: number | null;
  readonly url: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts in-process `lockwire serve` runs and stops the ones still listening. */
export interface InProcessServes {
  /**
   * Runs `lockwire serve --port 0 ...args` with `env` as its whole
   * environment (plus `LOCKWIRE_LOG_LEVEL=silent` unless `env` sets it) and
   * resolves once it listened or exited. Rejects when it did neither within
   * the wait.
   */
  run(args: readonly string[], env?: Record<string, string>): Promise<ServeRun>;
  /** Like `run`, but resolves the URL and rejects, with its stderr, when it exited instead. */
  listen(args: readonly string[], env?: Record<string, string>): Promise<string>;
  /** Fires the stop signal of every run still listening and awaits their exits (each bounded by the wait). */
  stopAll(): Promise<void>;
}

/**
 * In-process runs of the CLI's `serve` with a CliIo that catches the
 * listening URL, the output and the stop signal. Call `stopAll()` in
 * `afterEach`. `waitMs` bounds each start and each stop (default 5000 ms).
 */
export function inProcessServes(options: { waitMs?: number } = {}): InProcessServes {
  const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
  const running: Array<{ stop: () => void; exit: Promise<number> }> = [];

  async function run(args: readonly string[], env: Record<string, string> = {}): Promise<ServeRun> {
    const result = { exit: null as number | null, url: null as string | null, stdout: '', stderr: '' };
    let fire: () => void = () => {};
    let listening: (url: string) => void = () => {};
    const listened = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const io: CliIo = {
      stdout: {
        write: (text: string) => {
          result.stdout += text;
          const url = /ws:\/\/\S+/.exec(text)?.[0];
          if (url !== undefined) listening(url);
        },
      },
      stderr: { write: (text: string) => (result.stderr += text) },
      env: { LOCKWIRE_LOG_LEVEL: 'silent', ...env },
      onStopSignal(handler) {
        fire = handler;
        return () => {
          fire = () => {};
        };
      },
    };
    const exit = main(['serve', '--port', '0', ...args], io);
    const first = await within(Promise.race([exit, listened]), `serve ${args.join(' ')} to listen or exit`, waitMs);
    if (typeof first === 'number') {
      result.exit = first;
    } else {
      result.url = first;
      running.push({ stop: () => fire(), exit });
    }
    return result;
  }

  return {
    run,
    async listen(args, env) {
      const result = await run(args, env);
      if (result.url === null) throw new Error(`serve exited ${String(result.exit)}: ${result.stderr}`);
      return result.url;
    },
    async stopAll() {
      for (const serve of running.splice(0)) {
        serve.stop();
        await within(serve.exit, 'serve to stop', waitMs);
      }
    },
  };
}

/** Resolves `promise`, or rejects after `ms` naming what was awaited. */
function within<T>(promise: Promise<T>, what: string, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
