/**
 * Drives `fixtures/lock-client.mjs`, a lock client in its own OS process:
 * sends it commands, appends the history events it reports to the test's
 * recorder, performs its writes on the fenced resource, and kills, pauses
 * and resumes it by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { handoffGuardMs, type HistoryEvent, type HistoryRecorder } from '../checker/history.js';
import type { FencedResource } from '../checker/oracle.js';
import { within } from './within.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/lock-client.mjs', import.meta.url));

export interface ClientProcessOptions {
  url: string;
  /** The client's name in the history. */
  name: string;
  recorder: HistoryRecorder;
  /** Where the client's writes go; without it, writes are ignored. */
  resource?: FencedResource;
  /**
   * Bound of the `closed` event recorded by `kill()`. Default `handoffGuardMs(100)`
   * (a process death is a clean close; on the real clock the bound is a hang guard).
   */
  closeBoundMs?: number;
}

export interface ClientAcquire {
  key: string;
  acquireTimeout?: number | null;
  holdTimeout?: number | null;
  /**
   * Write the granted token to the resource this many ms after the grant,
   * each without checking the lock is still held (the holder checked when it
   * began its work). Default: no writes.
   */
  writeAfter?: number[];
}

type Report = { welcome?: string; event?: HistoryEvent; write?: { key: string; token: number } };

/** A lock client process; create it with `ClientProcess.start`. */
export class ClientProcess {
  /** Every history event the process reported, in order. */
  readonly events: HistoryEvent[] = [];
  /** Every write the process made, with the resource's verdict (`accepted` is `true` without a resource). */
  readonly writes: { key: string; token: number; accepted: boolean }[] = [];
  readonly #child: ChildProcess;
  readonly #options: ClientProcessOptions;
  readonly #waiters = new Set<() => void>();
  readonly exited: Promise<void>;
  #session = '';
  readonly #welcome = new Promise<void>((resolve) => this.#waiters.add(() => void (this.#session && resolve())));

  private constructor(child: ChildProcess, options: ClientProcessOptions) {
    this.#child = child;
    this.#options = options;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => this.#onReport(line));
  }

  /** Spawns the process and waits for its `welcome`. */
  static async start(options: ClientProcessOptions): Promise<ClientProcess> {
    const child = spawn(process.execPath, [FIXTURE, options.url, options.name], { stdio: ['pipe', 'pipe', 'inherit'] });
    const client = new ClientProcess(child, options);
    try {
      await within(client.#welcome, 10_000, `${options.name} connected`);
    } catch (error) {
      await client.kill();
      throw error;
    }
    return client;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get session(): string {
    return this.#session;
  }

  get name(): string {
    return this.#options.name;
  }

  acquire(command: ClientAcquire): void {
    this.#send({ cmd: 'acquire', ...command });
  }

  release(key: string): void {
    this.#send({ cmd: 'release', key });
  }

  watch(prefix: string): void {
    this.#send({ cmd: 'watch', prefix });
  }

  /** Resolves with the first reported event matching `match` (already reported or still to come). */
  next<E extends HistoryEvent>(match: (event: HistoryEvent) => event is E): Promise<E>;
  next(match: (event: HistoryEvent) => boolean): Promise<HistoryEvent>;
  next(match: (event: HistoryEvent) => boolean): Promise<HistoryEvent> {
    return this.until(() => this.events.find(match));
  }

  /** Resolves with the first value other than `undefined` that `probe` returns, probing after each report. */
  until<T>(probe: () => T | undefined): Promise<T> {
    return new Promise((resolve) => {
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          this.#waiters.delete(check);
          resolve(found);
        }
      };
      this.#waiters.add(check);
      check();
    });
  }

  /**
   * SIGKILL: records the connection's end (kind `clean`: the OS closes the
   * socket) at the moment of the kill, then waits for the process to exit.
   */
  async kill(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null && this.#child.pid !== undefined) {
      this.#options.recorder.record({
        type: 'closed',
        client: this.#options.name,
        kind: 'clean',
        boundMs: this.#options.closeBoundMs ?? handoffGuardMs(100),
      });
      process.kill(this.#child.pid, 'SIGKILL');
    }
    await this.exited;
  }

  /** SIGSTOP: the process neither runs nor reads its socket until `cont()`. */
  pause(): void {
    if (this.#child.pid !== undefined) process.kill(this.#child.pid, 'SIGSTOP');
  }

  /** SIGCONT. */
  cont(): void {
    if (this.#child.pid !== undefined) process.kill(this.#child.pid, 'SIGCONT');
  }

  #send(command: object): void {
    this.#child.stdin?.write(`${JSON.stringify(command)}\n`);
  }

  #onReport(line: string): void {
    let report: Report;
    try {
      report = JSON.parse(line) as Report;
    } catch {
      return;
    }
    if (report.welcome) this.#session = report.welcome;
    if (report.event) {
      // The process's own clock is the shared one (timeOrigin + now), so its stamps stand.
      this.events.push(report.event);
      this.#options.recorder.append([report.event]);
    }
    if (report.write) {
      const { key, token } = report.write;
      const accepted = this.#options.resource?.write(this.#options.name, key, token) ?? true;
      this.writes.push({ key, token, accepted });
    }
    for (const wake of [...this.#waiters]) wake();
  }
}
