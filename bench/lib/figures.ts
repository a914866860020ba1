/** Formatting and summarizing the figures, shared by the sections of the suite. */

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
