/**
 * RFC 2254 (LDAP v3) search filters in their string form, parsed once into a tree and then
 * matched against directory records: `(&(objectClass=person)(|(cn=Jo*)(mail=*@x.dom))(!(uid=bob)))`.
 *
 *   filter     = "(" filtercomp ")"
 *   filtercomp = "&" filter+ / "|" filter+ / "!" filter / item
 *   item       = attr "=" "*"                     presence
 *              / attr "=" [initial] "*" any… [final]   substrings
 *              / attr ("=" / "~=" / ">=" / "<=") value
 *
 * Values escape `*`, `(`, `)`, `\` and NUL as `\2a` `\28` `\29` `\5c` `\00` (RFC 2254); the
 * older `\*` form (RFC 1960) is accepted too. Matching ignores case (the caseIgnoreMatch
 * of the attributes a directory of accounts holds); `~=` is equality ignoring case and
 * blanks; `>=` and `<=` compare case-insensitively. A filter that does not start with `(`
 * is read as if it were wrapped in one pair (`cn=John*`), as many clients send it.
 */
import { ServiceError } from './errors.js';

export type DirectoryFilter =
  | { type: 'and' | 'or'; filters: DirectoryFilter[] }
  | { type: 'not'; filter: DirectoryFilter }
  | { type: 'present'; attr: string }
  | { type: 'equal' | 'approx' | 'greater' | 'less'; attr: string; value: string }
  | { type: 'substrings'; attr: string; initial?: string; any: string[]; final?: string };

/** Values of one record: attribute names lower-cased, each with one or more string values. */
export type RecordValues = ReadonlyMap<string, readonly string[]>;

export const MAX_FILTER_LENGTH = 4096;
const MAX_DEPTH = 32;
const ATTR = /^[A-Za-z][A-Za-z0-9-]*(?:;[A-Za-z0-9-]+)*$|^\d+(?:\.\d+)*$/;

class FilterError extends ServiceError {
  constructor(reason: string, at: number) {
    super(`invalid filter: ${reason} (at character ${at + 1})`);
  }
}

/** Parses an RFC 2254 filter string; throws a ServiceError saying what is wrong and where. */
export function parseFilter(text: string): DirectoryFilter {
  if (text.length > MAX_FILTER_LENGTH) throw new ServiceError(`invalid filter: longer than ${MAX_FILTER_LENGTH} characters`);
  const source = text.trim();
  if (source === '') throw new ServiceError('invalid filter: it is empty');
  const input = source.startsWith('(') ? source : `(${source})`;
  let pos = 0;

  const expect = (ch: string): void => {
    if (input[pos] !== ch) throw new FilterError(pos >= input.length ? `"${ch}" expected at the end` : `"${ch}" expected, found "${input[pos]}"`, pos);
    pos++;
  };

  const filter = (depth: number): DirectoryFilter => {
    if (depth > MAX_DEPTH) throw new FilterError(`nested deeper than ${MAX_DEPTH} levels`, pos);
    expect('(');
    let result: DirectoryFilter;
    const ch = input[pos];
    if (ch === '&' || ch === '|') {
      pos++;
      const filters: DirectoryFilter[] = [];
      while (input[pos] === '(') filters.push(filter(depth + 1));
      if (filters.length === 0) throw new FilterError(`"${ch}" needs at least one filter`, pos);
      result = { type: ch === '&' ? 'and' : 'or', filters };
    } else if (ch === '!') {
      pos++;
      result = { type: 'not', filter: filter(depth + 1) };
    } else {
      result = item();
    }
    expect(')');
    return result;
  };

  const item = (): DirectoryFilter => {
    const start = pos;
    while (pos < input.length && !'=~<>()'.includes(input[pos]!)) pos++;
    const attr = input.slice(start, pos).trim();
    if (attr === '') throw new FilterError('an attribute name is missing', start);
    if (!ATTR.test(attr)) throw new FilterError(`invalid attribute name ${JSON.stringify(attr.slice(0, 40))}`, start);
    let op: 'equal' | 'approx' | 'greater' | 'less';
    if (input.startsWith('~=', pos)) (op = 'approx'), (pos += 2);
    else if (input.startsWith('>=', pos)) (op = 'greater'), (pos += 2);
    else if (input.startsWith('<=', pos)) (op = 'less'), (pos += 2);
    else if (input[pos] === '=') (op = 'equal'), (pos += 1);
    else throw new FilterError('"=", "~=", ">=" or "<=" expected after the attribute name', pos);
    // The value runs to the closing parenthesis; unescaped `*` separate substrings.
    const parts: string[] = [''];
    while (pos < input.length && input[pos] !== ')') {
      const c = input[pos]!;
      if (c === '(') throw new FilterError('"(" in a value must be escaped as \\28', pos);
      if (c === '*') {
        parts.push('');
        pos++;
      } else if (c === '\\') {
        const hex = input.slice(pos + 1, pos + 3);
        if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
          // Consecutive escapes may spell one UTF-8 character.
          const bytes: number[] = [];
          while (input[pos] === '\\' && /^[0-9A-Fa-f]{2}$/.test(input.slice(pos + 1, pos + 3))) {
            bytes.push(parseInt(input.slice(pos + 1, pos + 3), 16));
            pos += 3;
          }
          parts[parts.length - 1] += Buffer.from(bytes).toString('utf8');
        } else if (pos + 1 < input.length && '*()\\'.includes(input[pos + 1]!)) {
          parts[parts.length - 1] += input[pos + 1];
          pos += 2;
        } else {
          throw new FilterError('a backslash must be followed by two hexadecimal digits', pos);
        }
      } else {
        parts[parts.length - 1] += c;
        pos++;
      }
    }
    if (parts.length === 1) return { type: op, attr, value: parts[0]! };
    if (op !== 'equal') throw new FilterError(`"*" is allowed only with "=" (escape it as \\2a)`, pos);
    if (parts.length === 2 && parts[0] === '' && parts[1] === '') return { type: 'present', attr };
    const initial = parts[0] === '' ? undefined : parts[0];
    const final = parts[parts.length - 1] === '' ? undefined : parts[parts.length - 1];
    const any = parts.slice(1, -1).filter((p) => p !== '');
    return { type: 'substrings', attr, initial, any, final };
  };

  const result = filter(0);
  if (pos !== input.length) throw new FilterError('unexpected text after the filter', pos);
  return result;
}

const fold = (s: string): string => s.toLowerCase();
const squeeze = (s: string): string => s.toLowerCase().replace(/\s+/g, '');

function substringsMatch(value: string, f: { initial?: string; any: string[]; final?: string }): boolean {
  const v = fold(value);
  let at = 0;
  if (f.initial !== undefined) {
    const initial = fold(f.initial);
    if (!v.startsWith(initial)) return false;
    at = initial.length;
  }
  for (const part of f.any) {
    const found = v.indexOf(fold(part), at);
    if (found < 0) return false;
    at = found + part.length;
  }
  if (f.final !== undefined) {
    const final = fold(f.final);
    return v.length - final.length >= at && v.endsWith(final);
  }
  return true;
}

/** Whether a record (its values by lower-cased attribute name) matches the filter. */
export function matchFilter(filter: DirectoryFilter, record: RecordValues): boolean {
  switch (filter.type) {
    case 'and':
      return filter.filters.every((f) => matchFilter(f, record));
    case 'or':
      return filter.filters.some((f) => matchFilter(f, record));
    case 'not':
      return !matchFilter(filter.filter, record);
    default: {
      const values = record.get(filter.attr.toLowerCase());
      if (!values || values.length === 0) return false;
      switch (filter.type) {
        case 'present':
          return true;
        case 'equal':
          return values.some((v) => fold(v) === fold(filter.value));
        case 'approx':
          return values.some((v) => squeeze(v) === squeeze(filter.value));
        case 'greater':
          return values.some((v) => fold(v) >= fold(filter.value));
        case 'less':
          return values.some((v) => fold(v) <= fold(filter.value));
        case 'substrings':
          return values.some((v) => substringsMatch(v, filter));
      }
    }
  }
}
