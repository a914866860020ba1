import { readFileSync } from 'node:fs';

/**
 * The server's version, from package.json. Kept apart from server.ts so that the command
 * line can print it (and run the store commands) without loading the listeners.
 */
export const SERVER_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
