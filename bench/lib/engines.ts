/** ximssd's store engines as the bench names them, and the sides a section compares. */

export type Engine = 'sqlite' | 'postgres';
export const ENGINES: readonly Engine[] = ['sqlite', 'postgres'];
export const ENGINE_LABEL: Record<Engine, string> = { sqlite: 'ximssd/SQLite', postgres: 'ximssd/PostgreSQL' };

/** A measured side: ximssd on one engine, or Dovecot. */
export type Side = Engine | 'dovecot';
