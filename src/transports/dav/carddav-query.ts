/**
 * addressbook-query filters (RFC 6352 10.5): prop-filter (any/all of its tests, or
 * is-not-defined), text-match (collations i;unicode-casemap, i;ascii-casemap, i;octet;
 * match-type equals/contains/starts-with/ends-with; negate-condition), param-filter, the
 * filter's anyof/allof test, and limit/nresults.
 */
import type { VObject, VProperty } from '../../services/contacts/model.js';
import { valueText } from '../../services/contacts/model.js';
import { clark, DAV_NS, type DavElement } from './xml.js';

const CARD_NS = 'urn:ietf:params:xml:ns:carddav';
const C = (local: string): string => clark(CARD_NS, local);

/** A malformed or unsupported addressbook-query: its status and precondition (Clark). */
export class QueryError extends Error {
  constructor(
    message: string,
    readonly condition: string,
    readonly status = 403,
  ) {
    super(message);
  }
}

type Collation = 'i;unicode-casemap' | 'i;ascii-casemap' | 'i;octet';
type MatchType = 'equals' | 'contains' | 'starts-with' | 'ends-with';

export interface TextMatch {
  text: string;
  collation: Collation;
  matchType: MatchType;
  negate: boolean;
}

export interface ParamFilter {
  name: string;
  isNotDefined: boolean;
  textMatch?: TextMatch;
}

export interface PropFilter {
  name: string;
  allof: boolean;
  isNotDefined: boolean;
  textMatches: TextMatch[];
  paramFilters: ParamFilter[];
}

export interface AddressQuery {
  allof: boolean;
  filters: PropFilter[];
  limit?: number;
}

function testOf(element: DavElement): boolean {
  const test = element.element.attrs.test ?? 'anyof';
  if (test !== 'anyof' && test !== 'allof') throw new QueryError(`bad test "${test}"`, C('supported-filter'), 400);
  return test === 'allof';
}

function parseTextMatch(element: DavElement): TextMatch {
  const collation = element.element.attrs.collation ?? 'i;unicode-casemap';
  if (collation !== 'i;unicode-casemap' && collation !== 'i;ascii-casemap' && collation !== 'i;octet') {
    throw new QueryError(`unsupported collation ${collation}`, C('supported-collation'));
  }
  const matchType = element.element.attrs['match-type'] ?? 'contains';
  if (matchType !== 'equals' && matchType !== 'contains' && matchType !== 'starts-with' && matchType !== 'ends-with') {
    throw new QueryError(`unsupported match-type ${matchType}`, C('supported-filter'));
  }
  const negate = (element.element.attrs['negate-condition'] ?? 'no') === 'yes';
  return { text: element.element.text(), collation, matchType, negate };
}

export function parseQuery(body: DavElement): AddressQuery {
  const filter = body.children.find((c) => c.name === C('filter'));
  const query: AddressQuery = { allof: false, filters: [] };
  if (filter) {
    query.allof = testOf(filter);
    for (const pf of filter.children) {
      if (pf.name !== C('prop-filter')) throw new QueryError(`unsupported filter element ${pf.local}`, C('supported-filter'));
      const name = (pf.element.attrs.name ?? '').toUpperCase();
      if (name === '') throw new QueryError('a prop-filter needs a name', C('supported-filter'), 400);
      const propFilter: PropFilter = { name, allof: testOf(pf), isNotDefined: false, textMatches: [], paramFilters: [] };
      for (const c of pf.children) {
        if (c.name === C('is-not-defined')) propFilter.isNotDefined = true;
        else if (c.name === C('text-match')) propFilter.textMatches.push(parseTextMatch(c));
        else if (c.name === C('param-filter')) {
          const param: ParamFilter = { name: (c.element.attrs.name ?? '').toUpperCase(), isNotDefined: false };
          for (const p of c.children) {
            if (p.name === C('is-not-defined')) param.isNotDefined = true;
            else if (p.name === C('text-match')) param.textMatch = parseTextMatch(p);
          }
          propFilter.paramFilters.push(param);
        } else throw new QueryError(`unsupported filter element ${c.local}`, C('supported-filter'));
      }
      query.filters.push(propFilter);
    }
  }
  const limit = body.children.find((c) => c.name === C('limit'));
  const nresults = limit?.children.find((c) => c.name === C('nresults'));
  if (nresults) {
    const n = Number(nresults.element.text().trim());
    if (!Number.isInteger(n) || n < 0) throw new QueryError('nresults must be a number', clark(DAV_NS, 'number-of-matches-within-limits'), 400);
    query.limit = n;
  }
  return query;
}

function fold(text: string, collation: Collation): string {
  switch (collation) {
    case 'i;octet':
      return text;
    case 'i;ascii-casemap':
      return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
    case 'i;unicode-casemap':
      return text.normalize('NFKD').toLowerCase();
  }
}

export function textMatches(value: string, match: TextMatch): boolean {
  const v = fold(value, match.collation);
  const t = fold(match.text, match.collation);
  let result: boolean;
  switch (match.matchType) {
    case 'equals':
      result = v === t;
      break;
    case 'contains':
      result = v.includes(t);
      break;
    case 'starts-with':
      result = v.startsWith(t);
      break;
    case 'ends-with':
      result = v.endsWith(t);
      break;
  }
  return match.negate ? !result : result;
}

function paramValues(property: VProperty, name: string): string[] | undefined {
  if (name === 'TYPE') return property.types.length > 0 ? property.types : undefined;
  return property.params.find((p) => p.name === name)?.values;
}

function propertyMatches(property: VProperty, filter: PropFilter): boolean {
  const tests: boolean[] = [];
  const value = valueText(property.value);
  for (const m of filter.textMatches) tests.push(textMatches(value, m));
  for (const p of filter.paramFilters) {
    const values = paramValues(property, p.name);
    if (p.isNotDefined) tests.push(values === undefined);
    else if (!p.textMatch) tests.push(values !== undefined);
    else tests.push(values !== undefined && values.some((v) => textMatches(v, p.textMatch!)));
  }
  if (tests.length === 0) return true;
  return filter.allof ? tests.every(Boolean) : tests.some(Boolean);
}

function filterMatches(object: VObject, filter: PropFilter): boolean {
  const properties = object.properties.filter((p) => p.name === filter.name);
  if (filter.isNotDefined) return properties.length === 0;
  return properties.some((p) => propertyMatches(p, filter));
}

/** Whether a card passes the query's filter (no filter: every card). */
export function queryMatches(object: VObject, query: AddressQuery): boolean {
  if (query.filters.length === 0) return true;
  return query.allof ? query.filters.every((f) => filterMatches(object, f)) : query.filters.some((f) => filterMatches(object, f));
}
