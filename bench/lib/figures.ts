/** Formatting and summarizing the figures, shared by the sections of the suite. */

/** A row of the report: a figure, its unit and target, and its ratio to the anchor (null: none). */
export interface Figure {
  name: string;
  value: number | null;
  unit: string;
  target: string;
  /** Throughput: value / its anchor (the echo ceiling, Kamailio, Asterisk's constant…). Memory: value / target. */
  ratio: number | null;
  note?: string;
}

/** `n` with thousands separators and exactly `digits` decimals. */
export const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export function median(list: readonly number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The first ten distinct error texts of a section, for its report. */
export class ErrorLog {
  readonly texts: string[] = [];
  add(text: string): void {
    if (this.texts.length < 10 && !this.texts.includes(text)) this.texts.push(text);
  }
}

/** A text table: a header, a rule, the rows; the columns in `right` aligned right. */
export function table(header: string[], rows: string[][], right: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}
