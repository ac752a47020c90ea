/** What was wrong with a settings file's JSON, said without quoting the file. */

/** The message of `error`, or `error` as text. */
export function problem(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * What `JSON.parse` found wrong in `text`, without quoting the text: the
 * parser's own message can quote the input around the fault, and a config
 * file may hold the auth secret or a Redis password, and a JWKS file key
 * material (a private key put there by mistake). Names the line and
 * column where the parser says where.
 */
export function jsonProblem(error: unknown, text: string): string {
  const message = problem(error);
  if (message.startsWith('Unexpected end of JSON input')) return 'the text ends before the JSON does';
  const at = / in JSON at position (\d+)$|at position (\d+)$/.exec(message);
  if (at && !message.includes('"')) {
    const offset = Number(at[1] ?? at[2]);
    const before = text.slice(0, offset);
    const line = before.split('\n').length;
    const column = offset - before.lastIndexOf('\n');
    return `${message.slice(0, at.index).trimEnd()} at line ${line}, column ${column}`;
  }
  return 'an unexpected character';
}
