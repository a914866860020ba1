/**
 * Passwords for the command line, kept off the command line: `--password-file FILE` (its
 * first line), or standard input — on a terminal a prompt without echo, asked twice; else
 * the first line read. `--password` still works (it shows in `ps` and the shell history).
 * The password is never printed or logged.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ServiceError } from '../services/errors.js';

export interface PasswordOptions {
  password?: string;
  passwordFile?: string;
}

/** Adds --password-file and --password. */
export function passwordOptions(command: Command, what: string): Command {
  return command
    .option('--password-file <file>', `read ${what} from the first line of FILE (default: standard input, prompted for on a terminal)`)
    .option('--password <pw>', `${what} (visible to other users of the machine: prefer --password-file or standard input)`);
}

/** The first line of a text, without its line end; undefined when the text is empty. */
function firstLine(text: string): string | undefined {
  if (text === '') return undefined;
  return text.split(/\r?\n/, 1)[0]!;
}

/** Reads standard input up to its first line end (or its end); undefined when it ends with nothing at all. */
function readFirstLine(): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    let text = '';
    const done = (value: string | undefined): void => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', reject);
      stdin.pause();
      stdin.unref?.();
      resolve(value);
    };
    const onData = (chunk: Buffer | string): void => {
      text += chunk.toString();
      if (/\r?\n/.test(text)) done(firstLine(text));
    };
    const onEnd = (): void => done(firstLine(text));
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.once('error', reject);
    stdin.resume();
  });
}

/** Prompts on the terminal (standard error) and reads an answer without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    let value = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      resolve(value);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish();
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          process.stderr.write('\n');
          process.exit(130);
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

/**
 * The password the options or standard input give. With `allowGenerate`, undefined means
 * "none given: generate one" (standard input ended at once, or an empty answer on the
 * terminal); otherwise a password is required. An empty password is refused.
 */
export async function readPassword(options: PasswordOptions, what: string, allowGenerate = false): Promise<string | undefined> {
  let password: string | undefined;
  if (options.password !== undefined) password = options.password;
  else if (options.passwordFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.passwordFile, 'utf8');
    } catch (err) {
      throw new ServiceError(`cannot read the password file ${options.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    password = firstLine(text) ?? '';
  } else if (process.stdin.isTTY) {
    const first = await promptHidden(`${what}${allowGenerate ? ' (empty: generate one)' : ''}: `);
    if (first === '' && allowGenerate) return undefined;
    const second = await promptHidden(`${what} again: `);
    if (first !== second) throw new ServiceError('the passwords do not match; nothing changed');
    password = first;
  } else {
    password = await readFirstLine();
    if (password === undefined) {
      if (allowGenerate) return undefined;
      throw new ServiceError(`no password given: use --password-file FILE, or write it on standard input`);
    }
  }
  if (password === '') throw new ServiceError('the password must not be empty');
  return password;
}
