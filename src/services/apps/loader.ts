import { readdir } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { errorText, type Logger } from '../../log.js';
import type { Application, Script } from './api.js';

/** The applications shipped with the server (src/apps/, built into dist/apps/). */
export const BUILT_IN_APPLICATIONS = fileURLToPath(new URL('../../apps/', import.meta.url));

/** What a program's name may be: it is the file's name, and XIMSS clients write it. */
const PROGRAM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Module files read as applications (TypeScript only where the runtime can load it: tests, tsx). */
const EXTENSIONS = new Set(['.js', '.mjs', ...(process.execArgv.some((a) => a.includes('tsx')) || process.env.TSX !== undefined ? ['.ts'] : [])]);

export interface LoadedApplications {
  programs: Map<string, Application>;
  /** Helpers of every application, by name. */
  helpers: Map<string, { program: string; helper: Script }>;
}

/**
 * Loads the application modules: the built-in ones first, then those of the configured
 * directory (which replace a built-in one of the same name). A module that fails to load, or
 * whose default export is not an application, is logged and left out; the server goes on.
 */
export async function loadApplications(directories: readonly string[], log: Logger): Promise<LoadedApplications> {
  const programs = new Map<string, Application>();
  const helpers = new Map<string, { program: string; helper: Script }>();
  for (const directory of directories) {
    let names: string[];
    try {
      names = (await readdir(directory)).sort();
    } catch (err) {
      log.error({ event: 'apps.directory_unreadable', directory, error: errorText(err) }, 'the applications directory cannot be read');
      continue;
    }
    for (const file of names) {
      const extension = extname(file);
      if (file.endsWith('.d.ts') || file.endsWith('.map')) continue;
      if (!EXTENSIONS.has(extension)) {
        if (extension === '.ts') log.warn({ event: 'apps.not_compiled', file: join(directory, file) }, 'a TypeScript application is left out: compile it to .js (tsc) for the server to load it');
        continue;
      }
      const program = file.slice(0, -extension.length);
      if (!PROGRAM_NAME.test(program)) {
        log.warn({ event: 'apps.bad_name', file }, 'an application file name is not a program name; left out');
        continue;
      }
      const path = resolve(join(directory, file));
      try {
        const module = (await import(pathToFileURL(path).href)) as { default?: unknown };
        const app = checkApplication(module.default);
        if (programs.has(program)) log.info({ event: 'apps.replaced', program, file: path }, 'an application replaces one of the same name');
        programs.set(program, app);
        for (const [name, helper] of Object.entries(app.helpers ?? {})) {
          const known = helpers.get(name);
          if (known && known.program !== program) log.warn({ event: 'apps.helper_replaced', helper: name, program, was: known.program }, 'a helper of that name is replaced');
          helpers.set(name, { program, helper });
        }
        log.info({ event: 'apps.loaded', program, file: path, entries: Object.keys(app.entries) }, 'application loaded');
      } catch (err) {
        log.error({ event: 'apps.load_failed', program, file: path, error: errorText(err) }, 'an application could not be loaded');
      }
    }
  }
  // A program replaced by a later directory may have left helpers that are no longer its.
  for (const [name, { program }] of helpers) if (!programs.get(program)?.helpers?.[name]) helpers.delete(name);
  return { programs, helpers };
}

function checkApplication(value: unknown): Application {
  if (typeof value !== 'object' || value === null) throw new Error('the module has no default export object');
  const app = value as Partial<Application>;
  if (typeof app.entries !== 'object' || app.entries === null) throw new Error('the default export has no entries');
  for (const [kind, table] of [['entries', app.entries], ['scripts', app.scripts], ['helpers', app.helpers]] as const) {
    if (table === undefined) continue;
    if (typeof table !== 'object' || table === null) throw new Error(`${kind} is not an object`);
    for (const [name, fn] of Object.entries(table)) if (typeof fn !== 'function') throw new Error(`${kind}.${name} is not a function`);
  }
  return app as Application;
}
