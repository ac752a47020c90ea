import WebSocket from 'ws';
import { decodeServerMessage, resultSchemas } from '@lockwire/protocol';

/** One message from the server as parsed JSON; fields are checked by the tests. */
export type Frame = { type: string } & Record<string, unknown>;

/** How a connection ended. */
export interface CloseInfo {
  code: number;
  reason: string;
}

export interface NextOptions {
  /** ms to wait before failing; default 2000. */
  timeout?: number;
  /** What the awaited message is, for the failure message. */
  label?: string;
}

const DEFAULT_TIMEOUT = 2000;

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

interface Waiter {
  match(frame: Frame): boolean;
  resolve(frame: Frame): void;
}

/**
 * A bare WebSocket client speaking the protocol by hand, for conformance
 * tests. Every message is kept in `messages` in arrival order; `next()`
 * takes the first matching message that no earlier `next()` took, so a
 * message that arrived before the test asked for it is not missed.
 * Every frame is checked against the protocol package's schemas; frames
 * that do not conform are collected in `malformed`.
 */
export class RawClient {
  /** Every message received, in order. */
  readonly messages: Frame[] = [];
  /** Descriptions of frames that were not valid protocol messages. */
  readonly malformed: string[] = [];
  private readonly taken = new Set<Frame>();
  private readonly waiters = new Set<Waiter>();
  private readonly ops = new Map<unknown, string>();
  private nextId = 1;
  private closeInfo: CloseInfo | undefined;
  private readonly closeWaiters = new Set<(info: CloseInfo) => void>();

  private constructor(
    readonly ws: WebSocket,
    readonly url: string,
  ) {
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      for (const wake of this.closeWaiters) wake(this.closeInfo);
      this.closeWaiters.clear();
    });
    ws.on('error', () => {
      // A refused or cut connection shows up as `close`; tests assert on that.
    });
  }

  /** The `welcome` message; set by `connect`. */
  welcome: Frame = { type: 'none' };

  /** The session id from the welcome. */
  get session(): string {
    return String(this.welcome.session);
  }

  /** Opens a connection and resolves once the welcome arrived. */
  static async connect(url: string, options: NextOptions = {}): Promise<RawClient> {
    const ws = new WebSocket(url);
    const client = new RawClient(ws, url);
    client.welcome = await client.next((m) => m.type === 'welcome', { label: 'welcome', ...options });
    return client;
  }

  private receive(data: WebSocket.RawData, isBinary: boolean): void {
    const text = toBuffer(data).toString('utf8');
    if (isBinary) this.malformed.push(`binary frame from the server: ${text.slice(0, 200)}`);
    let frame: Frame;
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
      frame = value as Frame;
    } catch {
      this.malformed.push(`not a JSON object: ${text.slice(0, 200)}`);
      return;
    }
    const decoded = decodeServerMessage(text);
    if (!decoded.ok) this.malformed.push(`${decoded.error}: ${text.slice(0, 300)}`);
    this.checkResult(frame, text);
    this.messages.push(frame);
    for (const waiter of this.waiters) {
      if (waiter.match(frame)) {
        this.waiters.delete(waiter);
        this.taken.add(frame);
        waiter.resolve(frame);
        return;
      }
    }
  }

  /** Checks a successful reply's result fields against the schema of the request's op. */
  private checkResult(frame: Frame, text: string): void {
    if (frame.type !== 'reply' || frame.ok !== true) return;
    const op = this.ops.get(frame.id);
    if (op === undefined || !(op in resultSchemas)) return;
    const schema = resultSchemas[op as keyof typeof resultSchemas];
    const parsed = schema.safeParse(frame);
    if (!parsed.success) this.malformed.push(`${op} result does not conform: ${text.slice(0, 300)}`);
  }

  /** Sends an object as a JSON text frame, a string as a text frame, a Buffer as a binary frame. */
  send(message: object | string | Buffer): void {
    if (Buffer.isBuffer(message)) {
      this.ws.send(message, { binary: true });
    } else if (typeof message === 'string') {
      this.ws.send(message);
    } else {
      const fields = message as Record<string, unknown>;
      if (typeof fields.op === 'string' && 'id' in fields) this.ops.set(fields.id, fields.op);
      this.ws.send(JSON.stringify(message));
    }
  }

  /** A fresh request id unique on this client. */
  id(): number {
    return this.nextId++;
  }

  /**
   * Sends a request (adding an `id` when it has none) without waiting, and
   * returns a promise of its reply. Several can be sent before awaiting any.
   */
  request(message: Record<string, unknown>, options: NextOptions = {}): Promise<Frame> {
    const id = 'id' in message ? message.id : this.id();
    const full = 'id' in message ? message : { ...message, id };
    this.send(full);
    return this.reply(id, { label: `reply to ${JSON.stringify(full).slice(0, 120)}`, ...options });
  }

  /** The next reply with this `id` not taken yet. */
  reply(id: unknown, options: NextOptions = {}): Promise<Frame> {
    return this.next((m) => m.type === 'reply' && m.id === id, { label: `reply ${JSON.stringify(id)}`, ...options });
  }

  /**
   * Resolves with the first message matching `predicate` that no earlier
   * call took, waiting at most `timeout` ms for it to arrive.
   */
  next(predicate: (frame: Frame) => boolean, options: NextOptions = {}): Promise<Frame> {
    for (const frame of this.messages) {
      if (!this.taken.has(frame) && predicate(frame)) {
        this.taken.add(frame);
        return Promise.resolve(frame);
      }
    }
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    return new Promise<Frame>((resolve, reject) => {
      const waiter: Waiter = {
        match: predicate,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const recent = this.messages.slice(-8).map((m) => JSON.stringify(m).slice(0, 200));
        reject(
          new Error(
            `no ${options.label ?? 'matching message'} within ${timeout} ms` +
              `${this.closeInfo ? ` (closed ${this.closeInfo.code})` : ''}; last messages:\n  ${recent.join('\n  ')}`,
          ),
        );
      }, timeout);
      this.waiters.add(waiter);
    });
  }

  /** The next `event` message for `key` (and of `event` kind, if given). */
  nextEvent(key: string, event?: string, options: NextOptions = {}): Promise<Frame> {
    return this.next((m) => m.type === 'event' && m.key === key && (event === undefined || m.event === event), {
      label: `event ${event ?? '*'} on ${JSON.stringify(key)}`,
      ...options,
    });
  }

  /** The next `lost` message for `key`. */
  nextLost(key: string, options: NextOptions = {}): Promise<Frame> {
    return this.next((m) => m.type === 'lost' && m.key === key, { label: `lost ${JSON.stringify(key)}`, ...options });
  }

  /** Messages of one type received so far, in order. */
  received(type: string): Frame[] {
    return this.messages.filter((m) => m.type === type);
  }

  /** Index of a message in `messages`, for order assertions. */
  indexOf(frame: Frame): number {
    return this.messages.indexOf(frame);
  }

  /** Resolves when the connection has closed, with its close code and reason. */
  nextClose(options: NextOptions = {}): Promise<CloseInfo> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    return new Promise<CloseInfo>((resolve, reject) => {
      const wake = (info: CloseInfo) => {
        clearTimeout(timer);
        resolve(info);
      };
      const timer = setTimeout(() => {
        this.closeWaiters.delete(wake);
        reject(new Error(`connection not closed within ${timeout} ms`));
      }, timeout);
      this.closeWaiters.add(wake);
    });
  }

  /** True once the connection has closed. */
  get closed(): boolean {
    return this.closeInfo !== undefined;
  }

  /** Cuts the TCP connection without a closing handshake. */
  terminate(): void {
    this.ws.terminate();
  }

  /** Closes cleanly (code 1000) and resolves when the close completed. */
  async close(): Promise<void> {
    if (this.closeInfo) return;
    const done = this.nextClose({ timeout: 5000 });
    this.ws.close(1000);
    await done;
  }
}
