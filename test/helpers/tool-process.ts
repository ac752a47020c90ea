import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { repoRoot } from './lockwire-process.js';

/** How a process ended. */
export interface ToolExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Which output stream a line came from. */
export type Stream = 'stdout' | 'stderr';

interface LineWaiter {
  stream: Stream;
  pattern: RegExp;
  resolve(line: string): void;
}

/**
 * A command-line program run as a child process for a test: every output
 * line is kept, a test awaits the line it expects (bounded), and the exit
 * is awaited with a bound too. The caller ends it (`kill()` in `afterEach`).
 */
export class ToolProcess {
  readonly lines: Record<Stream, string[]> = { stdout: [], stderr: [] };
  readonly exited: Promise<ToolExit>;
  readonly #child: ChildProcess;
  readonly #waiters = new Set<LineWaiter>();
  readonly #label: string;

  constructor(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    this.#label = [command, ...args].join(' ');
    this.#child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = this.#child[stream];
      if (!source) throw new Error(`${this.#label}: no ${stream} pipe`);
      createInterface({ input: source }).on('line', (line) => this.#receive(stream, line));
    }
  }

  /** Runs `node server/bin/lockwire.mjs ARGS` (build it first). */
  static lockwire(args: string[], env: NodeJS.ProcessEnv = {}): ToolProcess {
    return new ToolProcess(process.execPath, ['server/bin/lockwire.mjs', ...args], { env });
  }

  get pid(): number {
    const pid = this.#child.pid;
    if (pid === undefined) throw new Error(`${this.#label}: not spawned`);
    return pid;
  }

  /** Everything the stream printed so far, lines joined with `\n`. */
  text(stream: Stream = 'stdout'): string {
    return this.lines[stream].join('\n');
  }

  /** Resolves the first line (already printed or still to come) matching `pattern`; rejects after `timeout` ms. */
  waitForLine(pattern: RegExp, options: { stream?: Stream; timeout?: number } = {}): Promise<string> {
    const stream = options.stream ?? 'stdout';
    const seen = this.lines[stream].find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    const timeout = options.timeout ?? 10_000;
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        stream,
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `${this.#label}: no ${stream} line matching ${pattern} within ${timeout} ms\n` +
              `stdout:\n${this.text('stdout')}\nstderr:\n${this.text('stderr')}`,
          ),
        );
      }, timeout);
      this.#waiters.add(waiter);
    });
  }

  /** Resolves how the process ended; rejects (and kills it) if it runs longer than `timeout` ms. */
  async waitForExit(timeout = 15_000): Promise<ToolExit> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => {
            this.kill();
            reject(
              new Error(
                `${this.#label}: still running after ${timeout} ms\n` +
                  `stdout:\n${this.text('stdout')}\nstderr:\n${this.text('stderr')}`,
              ),
            );
          }, timeout);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes to the process's stdin. */
  write(text: string): void {
    this.#child.stdin?.write(text);
  }

  /** Sends `signal` if the process still runs. */
  signal(signal: NodeJS.Signals): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill(signal);
  }

  /** SIGKILL if still running. */
  kill(): void {
    this.signal('SIGKILL');
  }

  #receive(stream: Stream, line: string): void {
    this.lines[stream].push(line);
    for (const waiter of [...this.#waiters]) {
      if (waiter.stream === stream && waiter.pattern.test(line)) {
        this.#waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  }
}

/** True while a process with `pid` exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
