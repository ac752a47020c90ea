import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** How `lockwire run` starts its command. */
export interface CommandOptions {
  /** The program and its arguments. */
  command: readonly [string, ...string[]];
  env: NodeJS.ProcessEnv;
  /**
   * Start the command in its own session and process group, so signals
   * reach what it starts too. Off when stdin is a terminal: a process outside
   * the terminal's foreground group cannot read it, so there only the direct
   * process is signalled.
   */
  ownGroup: boolean;
  /** After a stop, how long SIGTERM has before SIGKILL, in ms. */
  killGrace: number;
}

/** How the command ended: its code or signal, or the error that kept it from starting. */
export type CommandEnd = { code: number | null; signal: NodeJS.Signals | null } | { error: unknown };

/** A started command. */
export interface RunningCommand {
  /**
   * Resolves once the command ended. After a signal or a stop, with its own
   * process group, that is once the whole group has exited (or was sent
   * SIGKILL and given a moment more): a shell that died of SIGTERM while the
   * work it started ignored it does not count as ended.
   */
  readonly ended: Promise<CommandEnd>;
  /** Sends `signal` to the command's process group (to its direct process only without {@link CommandOptions.ownGroup}). */
  signal(signal: NodeJS.Signals): void;
  /**
   * SIGTERM now and SIGKILL after the kill grace, both as {@link signal}
   * sends them (a group {@link suspend} stopped is continued after the
   * SIGTERM, so it can act on it). Idempotent.
   */
  stop(): void;
  /**
   * Sends SIGSTOP to the command's process group, as a shell does on Ctrl-Z
   * to a job; only with {@link CommandOptions.ownGroup} (otherwise the
   * command shares the tool's group, which the terminal stops as a whole).
   */
  suspend(): void;
  /** Sends SIGCONT to the group after {@link suspend}; does nothing otherwise. */
  resume(): void;
}

/** How often the process group is looked at while waiting for it to end. */
const GROUP_POLL_MS = 20;
/** After SIGKILL, how long the group may still show a member (one stuck in the kernel) before the wait ends anyway. */
const AFTER_KILL_MS = 1000;

/** True when `error` is a system error with `code`. */
function hasCode(error: unknown, code: string): boolean {
  return error instanceof Error && 'code' in error && error.code === code;
}

/** True when process `pid` (a /proc entry) is in group `pgid` and not a zombie. */
function liveInGroup(pid: string, pgid: string): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // After the program name, which may hold spaces and parentheses: state, ppid, pgrp.
  const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return pgrp === pgid && state !== 'Z' && state !== 'X';
}

/**
 * True while a process of group `pgid` runs. A zombie does not count: where
 * nothing reaps orphans (init in many containers) a killed process of the
 * group stays one, and it does no work. Without /proc the kernel's answer
 * to signal 0 is taken, zombies included.
 */
function groupRuns(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    return hasCode(error, 'EPERM');
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  const group = String(pgid);
  return entries.some((entry) => /^\d+$/.test(entry) && liveInGroup(entry, group));
}

/**
 * Starts the command with stdio inherited. Never throws: a command that
 * cannot be started resolves `ended` with the error.
 */
export function startCommand(options: CommandOptions): RunningCommand {
  let child: ChildProcess;
  try {
    child = spawn(options.command[0], options.command.slice(1), {
      stdio: 'inherit',
      env: options.env,
      detached: options.ownGroup,
    });
  } catch (error) {
    const none = () => undefined;
    return { ended: Promise.resolve({ error }), signal: none, stop: none, suspend: none, resume: none };
  }
  let stopping = false;
  let suspended = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let killedAt: number | undefined;
  let poll: ReturnType<typeof setTimeout> | undefined;

  const send = (signal: NodeJS.Signals) => {
    const pid = child.pid;
    if (pid === undefined) return;
    try {
      if (options.ownGroup) process.kill(-pid, signal);
      // `process.kill`, not `child.kill`: that one reports a failure (EPERM for a command that became another
      // user, as `sudo` does) as the child's 'error' event, which would pass for a command that never started.
      else if (child.exitCode === null && child.signalCode === null) process.kill(pid, signal);
    } catch {
      // The group has ended meanwhile, or the command may not be signalled: it runs on, and the lock with it.
    }
  };
  const armKill = () => {
    killTimer ??= setTimeout(() => {
      killedAt = Date.now();
      send('SIGKILL');
    }, options.killGrace);
  };

  const ended = new Promise<CommandEnd>((resolve) => {
    let done = false;
    const finish = (end: CommandEnd) => {
      if (done) return;
      done = true;
      clearTimeout(killTimer);
      clearTimeout(poll);
      resolve(end);
    };
    // Only a command that never started (no pid) ends with its error: any later one leaves it running.
    child.on('error', (error) => {
      if (child.pid === undefined) finish({ error });
    });
    child.once('exit', (code, signal) => {
      const pid = child.pid;
      if (!stopping || !options.ownGroup || pid === undefined) {
        finish({ code, signal });
        return;
      }
      // Signalled: what the command started must be gone too before the lock goes.
      // The direct process is gone; the rest of its group gets the kill grace from here at most.
      armKill();
      const check = () => {
        const gaveUp = killedAt !== undefined && Date.now() - killedAt > AFTER_KILL_MS;
        if (gaveUp || !groupRuns(pid)) finish({ code, signal });
        else poll = setTimeout(check, GROUP_POLL_MS);
      };
      check();
    });
  });

  return {
    ended,
    signal(signal) {
      stopping = true;
      send(signal);
    },
    stop() {
      if (killTimer !== undefined) return;
      stopping = true;
      send('SIGTERM');
      if (suspended) {
        suspended = false;
        send('SIGCONT');
      }
      // A command that ignores SIGTERM must still not outlive its lock for long.
      armKill();
    },
    suspend() {
      if (!options.ownGroup) return;
      suspended = true;
      send('SIGSTOP');
    },
    resume() {
      if (!suspended) return;
      suspended = false;
      send('SIGCONT');
    },
  };
}

/**
 * The signals whose default action would end the tool (Node ignores SIGPIPE
 * and SIGXFSZ, and SIGUSR1 starts its inspector): caught for the whole run,
 * so the tool never dies of one with the command left running, and passed on
 * to the command. Not caught: SIGPROF (V8's profiler uses it), and the
 * signals of a fault in the tool itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGABRT, SIGTRAP, SIGSYS).
 */
export const PASSED_ON_SIGNALS = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  'SIGXCPU',
  'SIGIO',
  'SIGPWR',
  'SIGSTKFLT',
] as const;
/**
 * What a terminal sends its whole foreground process group (Ctrl-C, Ctrl-\,
 * and a hang-up, which the shell passes on to each job's group): a command
 * in the tool's own group has had it already, and passing it on would
 * deliver it twice. So does sudo.
 */
export const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGINT', 'SIGQUIT', 'SIGHUP']);

/** Where the {@link PASSED_ON_SIGNALS} go; `route` changes it, `stop` removes the listeners. */
export interface SignalRoute {
  route(handler: (signal: NodeJS.Signals) => void): void;
  stop(): void;
}

/**
 * Listens for the {@link PASSED_ON_SIGNALS} from now until `stop()`, ignoring
 * them until routed: one set of listeners for the whole run, so a signal
 * between two phases (the command's exit and the release, say) never finds
 * none and kills the tool with the lock still held.
 */
export function listenForSignals(): SignalRoute {
  let handler: (signal: NodeJS.Signals) => void = () => undefined;
  const listener = (signal: NodeJS.Signals) => handler(signal);
  for (const signal of PASSED_ON_SIGNALS) process.on(signal, listener);
  return {
    route(next) {
      handler = next;
    },
    stop() {
      for (const signal of PASSED_ON_SIGNALS) process.off(signal, listener);
    },
  };
}

/**
 * Makes the tool and the command's own process group stop and continue
 * together, as a shell does with a job: on SIGTSTP (Ctrl-Z) the group gets
 * SIGSTOP, then the tool stops itself; on SIGCONT the group is continued.
 * A stopped tool answers no heartbeat, so a server may hand the lock on
 * meanwhile; the tool notices once continued and stops the command. Returns
 * a function that stops listening (SIGTSTP then stops the tool alone again,
 * the default, with no command left to stop).
 */
export function followJobControl(command: RunningCommand): () => void {
  const onStop = () => {
    command.suspend();
    process.kill(process.pid, 'SIGSTOP');
  };
  const onContinue = () => command.resume();
  process.on('SIGTSTP', onStop);
  process.on('SIGCONT', onContinue);
  return () => {
    process.off('SIGTSTP', onStop);
    process.off('SIGCONT', onContinue);
  };
}
