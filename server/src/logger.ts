/**
 * The logging the server needs: pino's method shape (`(obj, msg)`), so a pino
 * logger can be passed as is. Library code never writes to the console; it
 * logs through the logger it was given, silent by default.
 */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const ignore = () => {};

/** A logger that drops everything: the default of `createLockServer`. */
export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
