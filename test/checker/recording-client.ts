/**
 * A thin protocol client over a raw `ws` connection that records everything
 * it sends and receives into a history: acquire, release, cancel, ping, the
 * `queued` and `lost` pushes, and how the connection ended. It makes no
 * decisions of its own (no retries, no automatic release of late grants), so
 * the history shows exactly what the server did.
 */
import { decodeServerMessage, type LockMode, type ServerMessage } from '@lockwire/protocol';
import WebSocket from 'ws';
import { handoffGuardMs, type HistoryRecorder, type LockLost } from './history.js';

export interface RecordingClientOptions {
  recorder: HistoryRecorder;
  /** This connection's name in the history. Default: the session id from `welcome`. */
  name?: string;
  /** `boundMs` recorded with a close this client starts. Default `handoffGuardMs(100)`: a hang guard on the real clock. */
  closeBoundMs?: number;
  /** How long to wait for the connection and its `welcome`. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Passed to `ws` (headers, maxPayload, ...). */
  ws?: WebSocket.ClientOptions;
}

export interface AcquireOptions {
  mode?: LockMode;
  acquireTimeout?: number | null;
  holdTimeout?: number | null;
  steal?: boolean;
  /** Sent with the acquire (the server shows it in events); not part of the history. */
  meta?: Record<string, string>;
}

/** How an acquire ended, as recorded. */
export type AcquireResult =
  | { outcome: 'granted'; token: number }
  | { outcome: 'not-granted' }
  | { outcome: 'failed'; code: string }
  | { outcome: 'unknown' };

/** How a release ended, as recorded. */
export type ReleaseResult = { outcome: 'released' } | { outcome: 'failed'; code: string } | { outcome: 'unknown' };

/** An acquire in flight: its id (for `cancel`), its `queued` acknowledgement, and its result. */
export interface PendingAcquire {
  id: number;
  /** Resolves `true` when the server queued it, `false` when it was answered without queuing. */
  queued: Promise<boolean>;
  result: Promise<AcquireResult>;
}

type Pending =
  | { op: 'acquire'; key: string; resolve: (result: AcquireResult) => void; queued: (queued: boolean) => void }
  | { op: 'release'; key: string; resolve: (result: ReleaseResult) => void }
  | { op: 'cancel'; target: number; resolve: (cancelled: boolean | 'unknown') => void }
  | { op: 'ping'; resolve: (answered: boolean) => void };

/** The server hands a closed connection's locks on at once; the guard only catches a hand-off that never comes. */
const DEFAULT_CLOSE_BOUND_MS = handoffGuardMs(100);

/** A recorded protocol connection; create it with `RecordingClient.connect`. */
export class RecordingClient {
  /** Frames the client could not decode; a correct server leaves this empty. */
  readonly protocolErrors: string[] = [];
  /** Every `lost` received, in order. */
  readonly lost: LockLost[] = [];
  /** Resolves when the socket has closed, for whatever reason. */
  readonly closed: Promise<void>;
  readonly #ws: WebSocket;
  readonly #recorder: HistoryRecorder;
  readonly #closeBoundMs: number;
  readonly #pending = new Map<number, Pending>();
  readonly #lostWaiters = new Set<() => void>();
  #name = '';
  #session = '';
  #nextId = 1;
  #closeRecorded = false;
  /** Set once the close has been handled: later requests settle at once. */
  #ended = false;

  readonly #welcome: Promise<void>;
  #onWelcome: (error?: Error) => void = () => {};

  private constructor(ws: WebSocket, options: RecordingClientOptions) {
    this.#ws = ws;
    this.#recorder = options.recorder;
    this.#closeBoundMs = options.closeBoundMs ?? DEFAULT_CLOSE_BOUND_MS;
    this.#welcome = new Promise((resolve, reject) => {
      this.#onWelcome = (error) => (error ? reject(error) : resolve());
    });
    this.#welcome.catch(() => {}); // awaited by connect(); a late rejection after it gave up is no error

    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    void this.closed.then(() => this.#onClose());
    // One listener from the start, so no frame can slip past between the welcome and the rest.
    ws.on('message', (data: WebSocket.RawData) => this.#onFrame(String(data), options.name));
    ws.on('error', (error) => this.#onWelcome(error));
    ws.once('close', () => this.#onWelcome(new Error('closed before welcome')));
  }

  /** Opens a connection and waits for its `welcome`. Rejects if it does not arrive in time. */
  static async connect(url: string, options: RecordingClientOptions): Promise<RecordingClient> {
    const client = new RecordingClient(new WebSocket(url, options.ws), options);
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no welcome within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([client.#welcome, timeout]);
    } catch (error) {
      client.#ws.terminate();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** This connection's name in the history. */
  get name(): string {
    return this.#name;
  }

  /** The session id the server gave this connection. */
  get session(): string {
    return this.#session;
  }

  /** Sends an acquire and records it; see `PendingAcquire`. */
  startAcquire(key: string, options: AcquireOptions = {}): PendingAcquire {
    const id = this.#nextId++;
    const mode = options.mode ?? 'exclusive';
    const acquireTimeout = options.acquireTimeout ?? null;
    const holdTimeout = options.holdTimeout ?? null;
    const steal = options.steal ?? false;
    let queued: (queued: boolean) => void = () => {};
    const queuedPromise = new Promise<boolean>((resolve) => (queued = resolve));
    const result = new Promise<AcquireResult>((resolve) => {
      this.#pending.set(id, { op: 'acquire', key, resolve, queued });
    });
    this.#record({ type: 'acquire', client: this.#name, id, key, mode, acquireTimeout, holdTimeout, steal });
    this.#send({ op: 'acquire', id, key, mode, acquireTimeout, holdTimeout, steal, ...(options.meta ? { meta: options.meta } : {}) });
    return { id, queued: queuedPromise, result };
  }

  /** Sends an acquire and resolves with its recorded result. */
  acquire(key: string, options: AcquireOptions = {}): Promise<AcquireResult> {
    return this.startAcquire(key, options).result;
  }

  /** Sends a release and resolves with its recorded result. */
  release(key: string): Promise<ReleaseResult> {
    const id = this.#nextId++;
    const result = new Promise<ReleaseResult>((resolve) => this.#pending.set(id, { op: 'release', key, resolve }));
    this.#record({ type: 'release', client: this.#name, id, key });
    this.#send({ op: 'release', id, key });
    return result;
  }

  /** Cancels the pending acquire `target`; resolves whether the server still had it pending. */
  cancel(target: number): Promise<boolean | 'unknown'> {
    const id = this.#nextId++;
    const result = new Promise<boolean | 'unknown'>((resolve) => this.#pending.set(id, { op: 'cancel', target, resolve }));
    this.#record({ type: 'cancel', client: this.#name, id, target });
    this.#send({ op: 'cancel', id, target });
    return result;
  }

  /**
   * Calls `listener` on each WebSocket ping the server sends (its heartbeat),
   * after `ws` has already written the pong, with the history's time of
   * arrival; the order of these calls and of recorded events is the order
   * of arrival.
   */
  onHeartbeatPing(listener: (at: number) => void): void {
    this.#ws.on('ping', () => listener(this.#recorder.now()));
  }

  /** Pings the server; resolves `true` when answered, `false` if the connection ended first. */
  ping(): Promise<boolean> {
    const id = this.#nextId++;
    const result = new Promise<boolean>((resolve) => this.#pending.set(id, { op: 'ping', resolve }));
    this.#record({ type: 'ping', client: this.#name, id });
    this.#send({ op: 'ping', id });
    return result;
  }

  /** Resolves with the first `lost` for `key` (already received or still to come). */
  nextLost(key: string): Promise<LockLost> {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.lost.find((event) => event.key === key);
        if (!found) return false;
        this.#lostWaiters.delete(wake);
        resolve(found);
        return true;
      };
      const wake = () => void check();
      if (!check()) this.#lostWaiters.add(wake);
    });
  }

  /**
   * Closes the connection cleanly, recording the close (kind `clean`, bound
   * `closeBoundMs`) at the moment it is started; resolves once it is closed.
   */
  async close(): Promise<void> {
    this.#recordClose();
    this.#ws.close(1000);
    await this.closed;
  }

  /** Drops the TCP connection without a close handshake, as a killed process would; recorded as `clean`. */
  async terminate(): Promise<void> {
    this.#recordClose();
    this.#ws.terminate();
    await this.closed;
  }

  #recordClose(): void {
    if (this.#closeRecorded) return;
    this.#closeRecorded = true;
    this.#record({ type: 'closed', client: this.#name, kind: 'clean', boundMs: this.#closeBoundMs });
  }

  #record(event: Parameters<HistoryRecorder['record']>[0]): void {
    this.#recorder.record(event);
  }

  #send(message: Record<string, unknown> & { id: number }): void {
    if (this.#ws.readyState === WebSocket.OPEN) {
      this.#ws.send(JSON.stringify(message));
      return;
    }
    // Sent after the close was handled: nothing will ever answer it, so it
    // settles now, as the requests pending at the close did.
    if (this.#ended) this.#settleUnknown(message.id);
  }

  #onFrame(text: string, name: string | undefined): void {
    const decoded = decodeServerMessage(text);
    if (!decoded.ok) {
      this.protocolErrors.push(`${decoded.error}: ${text}`);
      if (!this.#session) this.#onWelcome(new Error(`expected welcome, got ${text}`));
      return;
    }
    if (!this.#session) {
      if (decoded.message.type !== 'welcome') {
        this.#onWelcome(new Error(`expected welcome, got ${text}`));
        return;
      }
      this.#session = decoded.message.session;
      this.#name = name ?? this.#session;
      this.#onWelcome();
      return;
    }
    this.#onMessage(decoded.message);
  }

  #onMessage(message: ServerMessage): void {
    const client = this.#name;
    if (message.type === 'queued') {
      const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
      this.#record({ type: 'queued', client, id: message.id, key: message.key, position: message.position });
      if (pending?.op === 'acquire') pending.queued(true);
      return;
    }
    if (message.type === 'lost') {
      const event = this.#recorder.record({ type: 'lost', client, key: message.key, token: message.token, reason: message.reason });
      if (event.type === 'lost') this.lost.push(event);
      for (const wake of [...this.#lostWaiters]) wake();
      return;
    }
    if (message.type !== 'reply' || typeof message.id !== 'number') return;
    const pending = this.#pending.get(message.id);
    if (!pending) {
      this.protocolErrors.push(`reply to unknown request ${message.id}`);
      return;
    }
    this.#pending.delete(message.id);
    const id = message.id;
    const code = message.ok ? undefined : (message as { error: { code: string } }).error.code;
    const fields = message as Record<string, unknown>;
    switch (pending.op) {
      case 'acquire': {
        const { key } = pending;
        pending.queued(false);
        if (code !== undefined) {
          this.#record({ type: 'acquire-failed', client, id, key, code });
          pending.resolve({ outcome: 'failed', code });
        } else if (fields.acquired === true && typeof fields.token === 'number') {
          this.#record({ type: 'granted', client, id, key, token: fields.token });
          pending.resolve({ outcome: 'granted', token: fields.token });
        } else {
          this.#record({ type: 'not-granted', client, id, key });
          pending.resolve({ outcome: 'not-granted' });
        }
        return;
      }
      case 'release':
        if (code !== undefined) {
          this.#record({ type: 'release-failed', client, id, key: pending.key, code });
          pending.resolve({ outcome: 'failed', code });
        } else {
          this.#record({ type: 'released', client, id, key: pending.key });
          pending.resolve({ outcome: 'released' });
        }
        return;
      case 'cancel': {
        const cancelled = code === undefined && fields.cancelled === true;
        this.#record({ type: 'cancel-reply', client, id, target: pending.target, cancelled });
        pending.resolve(cancelled);
        return;
      }
      case 'ping':
        this.#record({ type: 'pong', client, id });
        pending.resolve(true);
        return;
    }
  }

  #onClose(): void {
    this.#ended = true;
    if (!this.#closeRecorded) {
      this.#closeRecorded = true;
      this.#record({ type: 'closed', client: this.#name, kind: 'server' });
    }
    for (const id of [...this.#pending.keys()]) this.#settleUnknown(id);
  }

  /** Records request `id` as of unknown outcome and settles it so. */
  #settleUnknown(id: number): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    this.#record({ type: 'unknown', client: this.#name, id });
    if (pending.op === 'acquire') {
      pending.queued(false);
      pending.resolve({ outcome: 'unknown' });
    } else if (pending.op === 'release') {
      pending.resolve({ outcome: 'unknown' });
    } else if (pending.op === 'cancel') {
      pending.resolve('unknown');
    } else {
      pending.resolve(false);
    }
  }
}
