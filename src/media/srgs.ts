/**
 * SRGS 1.0 grammars for DTMF (W3C Speech Recognition Grammar Specification, XML form,
 * `application/srgs+xml`), the VoiceXML-style builtin grammars (`builtin:dtmf/digits?length=4`),
 * and a matcher that follows the digits of a call through them: what Rayo's input component
 * (XEP-0327) collects DTMF against. No protocol code here; the Rayo layer turns a SrgsError into
 * `bad-request` and a match into NLSML (nlsml.ts).
 *
 * What is read, and the choices made where SRGS leaves room (each is tested in
 * test/media-srgs.test.ts):
 * - `<grammar>`: `mode="dtmf"`; `mode="voice"` is refused ("voice grammars are not supported"). A
 *   grammar without `mode` is SRGS's default, voice, in theory; in practice DTMF clients omit it,
 *   so it is taken as DTMF when all its tokens are DTMF keys (any other token is an error anyway).
 *   `root` names the root rule (public or private, as SRGS 4.7 allows). Without `root`, the
 *   grammar matches any of its public rules (in document order, the first listed winning an
 *   ambiguity), as FreeSWITCH's mod_rayo does and as Rayo's own example grammar (XEP-0327
 *   example 071: a private `digit` rule and a public `pin` rule, no root) needs; without `root`
 *   and without a public rule it is an error. `tag-format`, `version`, `xml:lang`, `xml:base`:
 *   read or ignored; `<meta>`, `<metadata>`, `<lexicon>`, `<example>` are ignored.
 * - `<rule id scope>`, `<one-of>` of `<item>`s, `<item repeat repeat-prob weight>` (`repeat` is `n`,
 *   `n-m`, `n-`, so `0-1` is optional; `repeat-prob` and `weight` are checked for form and
 *   otherwise ignored: a DTMF key is either pressed or not), `<token>`, text tokens.
 * - Tokens: DTMF keys `0-9 * # A-D` (letters in either case), separated by white space; a run of
 *   keys without spaces (`<item>715</item>`, as Adhearsion and FreeSWITCH grammars write them)
 *   is the keys in order, and double quotes around a token are dropped (`" * "`).
 * - `<ruleref uri="#id">` to a rule of the same grammar; other URIs (other documents, builtins
 *   through ruleref) are refused. `<ruleref special="NULL|VOID|GARBAGE">`: NULL matches the empty
 *   input (always passes), VOID never matches; GARBAGE, which SRGS defines for speech ("any speech up
 *   until the next rule match"), is for DTMF any run of zero or more keys, taken as short as
 *   the rest of the grammar allows.
 * - Recursion (a rule that refers to itself through any chain of rulerefs, left recursion or
 *   not) is refused when the grammar is compiled: DTMF grammars say repetition with `repeat`.
 * - `<tag>`: kept along the path of a match. With `tag-format="semantics/1.0-literals"` (or no
 *   tag-format) a tag is a string literal and the interpretation of a match is the text of the
 *   last tag on its path. SISR scripts (`semantics/1.0`) are not executed: the tags of the path
 *   are still reported as written, and a tag that is only `out = "literal";` (the usual form of
 *   a script tag in DTMF menus) counts as that literal, also when no tag-format is declared;
 *   any other script leaves the interpretation undefined.
 * - Limits (SrgsError when crossed): document size, XML depth and element count (enforced while
 *   parsing by the server's XML guard), rule count, repeat bounds, and the size of the compiled
 *   automaton, which bounds what repeats and rulerefs expand to.
 *
 * Builtins (VoiceXML 2.0 appendix P, DTMF forms): `builtin:dtmf/digits` (parameters `length`,
 * `minlength`, `maxlength`, separated by `;` or `&`), `builtin:dtmf/boolean` (1 is true, 2 false;
 * `y=` and `n=` change the keys), `builtin:dtmf/number` (digits, `*` as the decimal point),
 * `builtin:dtmf/currency` (digits, then `*` and up to two decimals), `builtin:dtmf/phone`
 * (digits, `*` before an extension). The ABNF form (`application/srgs`) is read too, in the
 * subset compileSrgsAbnf describes, into the same rules. Grammars are not fetched by URL here
 * (the caller fetches, then compiles the body).
 *
 * The matcher is an NFA (Thompson's construction) run as a Pike VM: threads in priority order,
 * so an ambiguous grammar resolves to the earliest alternative (and greedy repeats), and each
 * thread carries the tags of its path. After each key it says `match` (with whether more keys
 * could still extend the sentence), `partial` or `nomatch`.
 *
 * Use, as Rayo's input component would:
 *   const set = new SrgsGrammarSet(grammars.map((g, i) =>
 *     compileGrammar({ url, contentType, body }, { name: url ?? `session:grammar-${i}` })));
 *   on each key: if it is the terminator and !set.accepts(key), end with set.terminate();
 *   else state = set.feed(key): 'nomatch' ends with nomatch; 'match' without canExtend ends
 *   with the match; 'match' with canExtend, and 'partial', wait for more keys (and on the
 *   inter-digit timeout end with set.terminate()). A match is reported as nlsmlFromMatch(state.match).
 */
import { DTMF_DIGITS } from './dtmf.js';
import { XmlParseError, parseXml, type XmlLimits } from '../xml/parser.js';
import type { XmlElement } from '../xml/element.js';

/** A grammar that cannot be compiled: the message says why, for the client. */
export class SrgsError extends Error {
  override name = 'SrgsError';
}

/** The SRGS XML namespace. */
export const SRGS_NAMESPACE = 'http://www.w3.org/2001/06/grammar';

export interface SrgsLimits {
  /** Characters of a grammar document. */
  documentChars: number;
  /** XML nesting depth. */
  depth: number;
  /** Elements in a document. */
  elements: number;
  /** Rules in a grammar. */
  rules: number;
  /** The largest repeat bound written in a grammar. */
  repeat: number;
  /** States of the compiled automaton: bounds what repeats and rulerefs expand to. */
  states: number;
  /** Keys a matcher follows; past it the input is a nomatch. */
  digits: number;
}

export const DEFAULT_SRGS_LIMITS: SrgsLimits = {
  documentChars: 64 * 1024,
  depth: 32,
  elements: 4096,
  rules: 256,
  repeat: 1000,
  states: 50_000,
  digits: 128,
};

/** A rule expansion, as read from the document (or built for a builtin). */
export type Expansion =
  | { kind: 'seq'; items: Expansion[] }
  | { kind: 'alt'; items: Expansion[] }
  | { kind: 'repeat'; min: number; max: number; body: Expansion }
  | { kind: 'key'; key: string }
  | { kind: 'ref'; rule: string }
  | { kind: 'null' }
  | { kind: 'void' }
  | { kind: 'garbage' }
  | { kind: 'tag'; text: string };

type KeyExpansion = Extract<Expansion, { kind: 'key' }>;

interface Rule {
  id: string;
  scope: 'public' | 'private';
  body: Expansion;
}

/** A tag on the path of a match: its text as written, and the rule it is in. */
export interface SrgsTag {
  text: string;
  rule: string;
}

/** What a grammar says about the keys fed so far. */
export type SrgsStatus = 'match' | 'partial' | 'nomatch';

export interface SrgsMatch {
  /** The grammar matched. */
  grammar: SrgsGrammar;
  /** Its index in a SrgsGrammarSet (0 for a lone grammar). */
  grammarIndex: number;
  /** The keys, as pressed ('1234#'). */
  digits: string;
  /** The tags along the path of the match, in order. */
  tags: SrgsTag[];
  /**
   * The semantic result: the last literal tag on the path, or what a builtin makes of the keys
   * ('true', '12.5'); undefined when the path has no tag (or only script tags, not executed).
   */
  interpretation: string | undefined;
}

export interface SrgsState {
  status: SrgsStatus;
  /** True when more keys could still make (or keep) a match: wait for them (inter-digit timeout, terminator). */
  canExtend: boolean;
  /** The keys fed so far. */
  digits: string;
  /** The match, when status is 'match'. */
  match?: SrgsMatch;
}

export interface CompileOptions {
  /** A name for the grammar, reported as NLSML's `grammar` attribute (a URL, `session:…`). */
  name?: string;
  limits?: Partial<SrgsLimits>;
}

/** A grammar as a client gives it: a body and its content type, or a URL (builtins only). */
export interface GrammarSource {
  contentType?: string;
  body?: string;
  url?: string;
}

const SPECIAL_RULES = new Set(['NULL', 'VOID', 'GARBAGE']);

/** The content types taken as SRGS XML (the second is VoiceXML 2.0's older name for it). */
const XML_TYPES = new Set(['application/srgs+xml', 'application/grammar+xml']);

/**
 * Compiles a grammar as Rayo's `<grammar>` carries it: `content-type` and a body, or a `url`
 * (only `builtin:dtmf/…` ones: fetching is the caller's). Throws SrgsError.
 */
export function compileGrammar(source: GrammarSource, options: CompileOptions = {}): SrgsGrammar {
  if (source.url !== undefined && source.url !== '') {
    if (source.body !== undefined && source.body.trim() !== '') {
      throw new SrgsError('a grammar has either a url or a content-type and a body, not both');
    }
    if (/^builtin:/i.test(source.url)) return compileBuiltin(source.url, options);
    throw new SrgsError(`grammars are not fetched by URL here (${truncate(source.url)}): send the grammar inline, or use a builtin:dtmf/ grammar`);
  }
  const type = (source.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (source.body === undefined || source.body.trim() === '') throw new SrgsError('the grammar is empty');
  if (type === '' || XML_TYPES.has(type)) return compileSrgsXml(source.body, options);
  if (type === 'application/srgs') return compileSrgsAbnf(source.body, options);
  throw new SrgsError(`grammar content type ${truncate(type)} is not supported: send application/srgs+xml (or application/srgs)`);
}

/** Compiles an SRGS XML grammar document (mode dtmf). Throws SrgsError. */
export function compileSrgsXml(document: string, options: CompileOptions = {}): SrgsGrammar {
  const limits = { ...DEFAULT_SRGS_LIMITS, ...options.limits };
  if (document.length > limits.documentChars) {
    throw new SrgsError(`the grammar is too large: more than ${limits.documentChars} characters`);
  }
  const root = parseDocument(document, limits);
  const reader = new GrammarReader(limits);
  const grammar = reader.read(root);
  return new SrgsGrammar(grammar.rules, grammar.root, grammar.tagFormat, limits, options.name, undefined);
}

// ---------------------------------------------------------------------------------------------
// Reading the XML form

function parseDocument(document: string, limits: SrgsLimits): XmlElement {
  // A grammar in a CDATA section usually starts with a line break before its XML declaration,
  // which XML does not allow: leading white space and a byte order mark are dropped.
  const text = document.replace(/^[\uFEFF\s]+/, '');
  const xmlLimits: XmlLimits = {
    depth: limits.depth,
    elements: limits.elements,
    attributes: 32,
    attributeChars: 4096,
    textChars: limits.documentChars,
    rootChildren: Number.POSITIVE_INFINITY,
  };
  try {
    return parseXml(text, xmlLimits);
  } catch (err) {
    if (err instanceof XmlParseError) {
      throw new SrgsError(`the grammar is not well-formed XML: ${err.message.replace(/^the request is refused: /, '')}`);
    }
    throw err;
  }
}

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

function prefixOf(name: string): string | undefined {
  const colon = name.indexOf(':');
  return colon < 0 ? undefined : name.slice(0, colon);
}

function truncate(s: string, max = 40): string {
  return JSON.stringify(s.length > max ? s.slice(0, max) + '…' : s);
}

/** The one-character DTMF keys of a token, upper-cased; throws on anything else. */
function keysOf(token: string): string[] {
  const keys: string[] = [];
  for (const ch of token) {
    const key = ch.toUpperCase();
    if (key.length !== 1 || !DTMF_DIGITS.includes(key)) {
      throw new SrgsError(`the token ${truncate(token)} is not made of DTMF keys (0-9, *, #, A-D)`);
    }
    keys.push(key);
  }
  return keys;
}

/** Text tokens: white space separates them; double quotes around one are dropped. */
function tokensOf(text: string): Expansion[] {
  const out: Expansion[] = [];
  const re = /"([^"]*)"|([^\s"]+)|(")/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[3] !== undefined) throw new SrgsError(`a token has an unterminated quote: ${truncate(text.trim())}`);
    const token = (m[1] ?? m[2] ?? '').replace(/\s+/g, '');
    for (const key of keysOf(token)) out.push({ kind: 'key', key });
  }
  return out;
}

function seq(items: Expansion[]): Expansion {
  return items.length === 1 ? items[0]! : { kind: 'seq', items };
}

const REPEAT = /^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$/;

function parseRepeat(value: string, limits: SrgsLimits): { min: number; max: number } {
  const m = REPEAT.exec(value);
  if (!m) throw new SrgsError(`repeat=${truncate(value)} is not a repeat count (n, n-m, n-)`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3]);
  if (min > limits.repeat || (Number.isFinite(max) && max > limits.repeat)) {
    throw new SrgsError(`repeat=${truncate(value)} is more than ${limits.repeat}`);
  }
  if (max < min) throw new SrgsError(`repeat=${truncate(value)}: the maximum is less than the minimum`);
  if (max === 0) throw new SrgsError(`repeat=${truncate(value)} repeats nothing`);
  return { min, max };
}

function checkProbability(name: string, value: string | undefined, max: number): void {
  if (value === undefined) return;
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > max) {
    throw new SrgsError(`${name}=${truncate(value)} is not a valid ${name}`);
  }
}

class GrammarReader {
  private readonly rules = new Map<string, Rule>();
  private tagFormat: string | undefined;

  constructor(private readonly limits: SrgsLimits) {}

  read(root: XmlElement): { rules: Map<string, Rule>; root: Expansion; tagFormat: string | undefined } {
    if (localName(root.name) !== 'grammar') {
      throw new SrgsError(`the document is not an SRGS grammar: its root element is <${root.name}>, not <grammar>`);
    }
    const ns = root.attr(prefixOf(root.name) === undefined ? 'xmlns' : `xmlns:${prefixOf(root.name)}`);
    if (ns !== undefined && ns !== SRGS_NAMESPACE) {
      throw new SrgsError(`the grammar's namespace is ${truncate(ns)}, not ${SRGS_NAMESPACE}`);
    }
    const mode = root.attr('mode');
    if (mode !== undefined && mode.trim() !== 'dtmf') {
      if (mode.trim() === 'voice') {
        throw new SrgsError('voice grammars (mode="voice") are not supported: only DTMF grammars (mode="dtmf") are');
      }
      throw new SrgsError(`mode=${truncate(mode)} is not a grammar mode (dtmf)`);
    }
    const version = root.attr('version');
    if (version !== undefined && version.trim() !== '1.0') throw new SrgsError(`SRGS version ${truncate(version)} is not supported (1.0)`);
    this.tagFormat = root.attr('tag-format')?.trim() || undefined;

    const order: Rule[] = [];
    for (const child of root.children) {
      if (typeof child === 'string') {
        if (child.trim() === '') continue; // white space in a CDATA section
        throw new SrgsError(`text is not allowed between the rules of a grammar: ${truncate(child.trim())}`);
      }
      const name = localName(child.name);
      if (prefixOf(child.name) !== undefined && name !== 'rule') continue; // foreign elements
      switch (name) {
        case 'rule': {
          const rule = this.readRule(child);
          order.push(rule);
          break;
        }
        case 'meta':
        case 'metadata':
        case 'lexicon':
        case 'tag':
          break; // nothing for DTMF; a grammar-level tag is SISR script run before recognition
        default:
          throw new SrgsError(`<${child.name}> is not allowed in <grammar>`);
      }
    }
    return { rules: this.rules, root: this.finish(order, root.attr('root'), 'give <grammar> a root attribute'), tagFormat: this.tagFormat };
  }

  /** Checks the rules once all are read, and gives the root expansion (the XML and ABNF forms share it). */
  finish(order: Rule[], rootName: string | undefined, rootHint: string): Expansion {
    if (order.length === 0) throw new SrgsError('the grammar has no rule');
    // every ruleref names a rule
    for (const rule of order) this.checkRefs(rule.body, rule.id);
    this.checkRecursion(order);
    if (rootName !== undefined) {
      const id = rootName.trim();
      if (!this.rules.has(id)) throw new SrgsError(`the root rule ${truncate(id)} is not defined in the grammar`);
      return { kind: 'ref', rule: id };
    }
    const publics = order.filter((r) => r.scope === 'public');
    if (publics.length === 0) throw new SrgsError(`the grammar has no root rule: ${rootHint}, or make a rule public`);
    return publics.length === 1 ? { kind: 'ref', rule: publics[0]!.id } : { kind: 'alt', items: publics.map((r) => ({ kind: 'ref', rule: r.id })) };
  }

  rulesMap(): Map<string, Rule> {
    return this.rules;
  }

  /** Adds a rule (checking its id and scope). */
  addRule(idValue: string | undefined, scopeValue: string, body: () => Expansion): Rule {
    const id = idValue?.trim();
    if (!id) throw new SrgsError('a rule has no id');
    if (!/^[A-Za-z_][\w.\-]*$/.test(id)) throw new SrgsError(`the rule id ${truncate(id)} is not a valid name`);
    if (SPECIAL_RULES.has(id)) throw new SrgsError(`${id} is a special rule name and cannot be a rule id`);
    if (this.rules.has(id)) throw new SrgsError(`the rule ${truncate(id)} is defined twice`);
    if (this.rules.size >= this.limits.rules) throw new SrgsError(`the grammar has more than ${this.limits.rules} rules`);
    if (scopeValue !== 'public' && scopeValue !== 'private') {
      throw new SrgsError(`scope=${truncate(scopeValue)} on rule ${truncate(id)} is not public or private`);
    }
    const rule: Rule = { id, scope: scopeValue, body: body() };
    this.rules.set(id, rule);
    return rule;
  }

  private readRule(element: XmlElement): Rule {
    const id = element.attr('id');
    return this.addRule(id, element.attr('scope')?.trim() ?? 'private', () => this.readSequence(element, `rule ${truncate(id?.trim() ?? '')}`));
  }

  /** The children of a rule or item: text tokens and expansion elements, in sequence. */
  private readSequence(element: XmlElement, where: string): Expansion {
    const items: Expansion[] = [];
    for (const child of element.children) {
      if (typeof child === 'string') {
        items.push(...tokensOf(child));
        continue;
      }
      const name = localName(child.name);
      switch (name) {
        case 'item':
          items.push(this.readItem(child));
          break;
        case 'one-of':
          items.push(this.readOneOf(child));
          break;
        case 'ruleref':
          items.push(this.readRuleref(child));
          break;
        case 'token': {
          const keys = tokensOf(`"${child.text().replace(/"/g, '')}"`);
          if (keys.length === 0) throw new SrgsError('a <token> is empty');
          if (child.elements().length > 0) throw new SrgsError('a <token> holds only text');
          items.push(...keys);
          break;
        }
        case 'tag':
          items.push({ kind: 'tag', text: child.text().trim() });
          break;
        case 'example':
          break;
        default:
          throw new SrgsError(`<${child.name}> is not allowed in ${where}`);
      }
    }
    if (items.length === 0) return { kind: 'null' };
    return seq(items);
  }

  private readItem(element: XmlElement): Expansion {
    checkProbability('repeat-prob', element.attr('repeat-prob'), 1);
    checkProbability('weight', element.attr('weight'), Number.MAX_VALUE);
    const body = this.readSequence(element, '<item>');
    const repeat = element.attr('repeat');
    if (repeat === undefined) return body;
    const { min, max } = parseRepeat(repeat, this.limits);
    if (min === 1 && max === 1) return body;
    return { kind: 'repeat', min, max, body };
  }

  private readOneOf(element: XmlElement): Expansion {
    const items: Expansion[] = [];
    for (const child of element.children) {
      if (typeof child === 'string') {
        if (child.trim() === '') continue;
        throw new SrgsError(`text in <one-of> must be inside an <item>: ${truncate(child.trim())}`);
      }
      if (localName(child.name) !== 'item') throw new SrgsError(`<${child.name}> is not allowed in <one-of> (only <item>)`);
      items.push(this.readItem(child));
    }
    if (items.length === 0) throw new SrgsError('a <one-of> has no <item>');
    return items.length === 1 ? items[0]! : { kind: 'alt', items };
  }

  private readRuleref(element: XmlElement): Expansion {
    if (element.children.length > 0) throw new SrgsError('a <ruleref> is empty');
    const uri = element.attr('uri')?.trim();
    const special = element.attr('special')?.trim();
    if ((uri === undefined) === (special === undefined)) {
      throw new SrgsError('a <ruleref> has either a uri or a special attribute');
    }
    if (special !== undefined) {
      switch (special) {
        case 'NULL':
          return { kind: 'null' };
        case 'VOID':
          return { kind: 'void' };
        case 'GARBAGE':
          return { kind: 'garbage' };
        default:
          throw new SrgsError(`special=${truncate(special)} is not NULL, VOID or GARBAGE`);
      }
    }
    if (!uri!.startsWith('#') || uri!.length < 2) {
      throw new SrgsError(`only rules of the same grammar can be referenced (uri="#id"), not ${truncate(uri!)}`);
    }
    return { kind: 'ref', rule: uri!.slice(1) };
  }

  private checkRefs(exp: Expansion, ruleId: string): void {
    switch (exp.kind) {
      case 'seq':
      case 'alt':
        for (const item of exp.items) this.checkRefs(item, ruleId);
        break;
      case 'repeat':
        this.checkRefs(exp.body, ruleId);
        break;
      case 'ref':
        if (!this.rules.has(exp.rule)) {
          throw new SrgsError(`rule ${truncate(ruleId)} refers to ${truncate('#' + exp.rule)}, which is not defined in the grammar`);
        }
        break;
      default:
        break;
    }
  }

  /** Refuses any rule that refers to itself through a chain of rulerefs (saying when it is left recursion). */
  private checkRecursion(order: Rule[]): void {
    const state = new Map<string, 1 | 2>(); // 1: on the path, 2: done
    const path: string[] = [];
    const visit = (id: string): void => {
      state.set(id, 1);
      path.push(id);
      for (const next of refsOf(this.rules.get(id)!.body)) {
        const s = state.get(next);
        if (s === 1) {
          const cycle = [...path.slice(path.indexOf(next)), next];
          const left = this.isLeftCycle(cycle);
          throw new SrgsError(
            `rule ${truncate(next)} is ${left ? 'left-recursive' : 'recursive'} (${cycle.map((r) => '#' + r).join(' → ')}): recursive rules are not supported, use repeat`,
          );
        }
        if (s === undefined) visit(next);
      }
      path.pop();
      state.set(id, 2);
    };
    for (const rule of order) if (!state.has(rule.id)) visit(rule.id);
  }

  /** True when each step of the cycle comes before any key of its rule (left recursion). */
  private isLeftCycle(cycle: string[]): boolean {
    const nullable = new Map<string, boolean>();
    for (let i = 0; i + 1 < cycle.length; i++) {
      if (!leftRefs(this.rules.get(cycle[i]!)!.body, this.rules, nullable).has(cycle[i + 1]!)) return false;
    }
    return true;
  }
}

function refsOf(exp: Expansion, out = new Set<string>()): Set<string> {
  switch (exp.kind) {
    case 'seq':
    case 'alt':
      for (const item of exp.items) refsOf(item, out);
      break;
    case 'repeat':
      refsOf(exp.body, out);
      break;
    case 'ref':
      out.add(exp.rule);
      break;
    default:
      break;
  }
  return out;
}

/** Whether an expansion can match no key at all (a rule being decided counts as not). */
function isNullable(exp: Expansion, rules: Map<string, Rule>, memo: Map<string, boolean>): boolean {
  switch (exp.kind) {
    case 'seq':
      return exp.items.every((item) => isNullable(item, rules, memo));
    case 'alt':
      return exp.items.some((item) => isNullable(item, rules, memo));
    case 'repeat':
      return exp.min === 0 || isNullable(exp.body, rules, memo);
    case 'key':
    case 'void':
      return false;
    case 'ref': {
      const known = memo.get(exp.rule);
      if (known !== undefined) return known;
      memo.set(exp.rule, false);
      const value = isNullable(rules.get(exp.rule)!.body, rules, memo);
      memo.set(exp.rule, value);
      return value;
    }
    default:
      return true;
  }
}

/** The rules an expansion can refer to before it has matched any key. */
function leftRefs(exp: Expansion, rules: Map<string, Rule>, memo: Map<string, boolean>, out = new Set<string>()): Set<string> {
  switch (exp.kind) {
    case 'seq':
      for (const item of exp.items) {
        leftRefs(item, rules, memo, out);
        if (!isNullable(item, rules, memo)) break;
      }
      break;
    case 'alt':
      for (const item of exp.items) leftRefs(item, rules, memo, out);
      break;
    case 'repeat':
      leftRefs(exp.body, rules, memo, out);
      break;
    case 'ref':
      out.add(exp.rule);
      break;
    default:
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The ABNF form (application/srgs), a subset

/**
 * Compiles a grammar in SRGS's ABNF form (section 4 of SRGS 1.0), the subset a DTMF grammar
 * needs: the `#ABNF 1.0 [encoding];` header; the declarations `mode`, `root`, `tag-format`,
 * `language`, `base`, `lexicon`, `meta`, `http-equiv` (only mode, root and tag-format mean
 * anything here) and grammar-level tags; rules `[public|private] $name = expansion;` with
 * tokens (bare or quoted), `$name`, `$NULL`, `$VOID`, `$GARBAGE`, `|` with `/weight/`, `( )`,
 * `[ ]` (optional), repeats `<n>`, `<n-m>`, `<n->` (with `/prob/`, ignored), tags `{…}` and
 * `{!{…}!}`, and line and block comments. External references (`$<uri>`) and language
 * attachments (`!en`) are refused. Throws SrgsError.
 */
export function compileSrgsAbnf(document: string, options: CompileOptions = {}): SrgsGrammar {
  const limits = { ...DEFAULT_SRGS_LIMITS, ...options.limits };
  if (document.length > limits.documentChars) {
    throw new SrgsError(`the grammar is too large: more than ${limits.documentChars} characters`);
  }
  const parsed = new AbnfReader(document.replace(/^\uFEFF/, ''), limits).read();
  return new SrgsGrammar(parsed.rules, parsed.root, parsed.tagFormat, limits, options.name, undefined);
}

/** Characters that end a bare ABNF token. */
const ABNF_SPECIAL = new Set([';', '=', '|', '(', ')', '[', ']', '<', '>', '{', '}', '$', '/', '"', '!']);

class AbnfReader {
  private at = 0;
  private depth = 0;
  private readonly reader: GrammarReader;

  constructor(
    private readonly text: string,
    private readonly limits: SrgsLimits,
  ) {
    this.reader = new GrammarReader(limits);
  }

  read(): { rules: Map<string, Rule>; root: Expansion; tagFormat: string | undefined } {
    const header = /^#ABNF[ \t]+([^\s;]+)(?:[ \t]+[^\s;]+)?[ \t]*;/.exec(this.text);
    if (!header) throw new SrgsError('an ABNF grammar starts with its header, "#ABNF 1.0;"');
    if (header[1] !== '1.0') throw new SrgsError(`SRGS version ${truncate(header[1]!)} is not supported (1.0)`);
    this.at = header[0].length;
    let root: string | undefined;
    let tagFormat: string | undefined;
    const order: Rule[] = [];
    for (;;) {
      this.skip();
      if (this.at >= this.text.length) break;
      const c = this.text[this.at]!;
      if (c === '$' || this.text.startsWith('public', this.at) || this.text.startsWith('private', this.at)) {
        order.push(this.readRule());
        continue;
      }
      if (c === '{') {
        this.readTag();
        this.expect(';');
        continue;
      }
      if (order.length > 0) throw this.error('declarations come before the rules');
      const keyword = this.word();
      switch (keyword) {
        case 'mode': {
          const mode = this.word();
          if (mode === 'voice') throw new SrgsError('voice grammars (mode voice) are not supported: only DTMF grammars (mode dtmf) are');
          if (mode !== 'dtmf') throw new SrgsError(`mode ${truncate(mode)} is not a grammar mode (dtmf)`);
          break;
        }
        case 'root':
          this.skip();
          if (this.text[this.at] !== '$') throw this.error('root names a rule: root $name;');
          this.at++;
          root = this.name();
          break;
        case 'tag-format':
          tagFormat = this.until(';').trim().replace(/^<(.*)>$/, '$1');
          break;
        case 'language':
        case 'base':
        case 'lexicon':
        case 'meta':
        case 'http-equiv':
          this.until(';');
          break;
        default:
          throw this.error(`${truncate(keyword)} is not an ABNF declaration`);
      }
      this.expect(';');
    }
    return { rules: this.reader.rulesMap(), root: this.reader.finish(order, root, 'declare root $name;'), tagFormat };
  }

  private readRule(): Rule {
    let scope = 'private';
    if (this.text.startsWith('public', this.at) || this.text.startsWith('private', this.at)) scope = this.word();
    this.skip();
    if (this.text[this.at] !== '$') throw this.error('a rule starts with $name');
    this.at++;
    const id = this.name();
    this.expect('=');
    const rule = this.reader.addRule(id, scope, () => this.alternatives(';'));
    this.expect(';');
    return rule;
  }

  /** Alternatives up to (not including) `end`. */
  private alternatives(end: string): Expansion {
    if (++this.depth > this.limits.depth) throw new SrgsError(`the grammar is nested deeper than ${this.limits.depth}`);
    const items: Expansion[] = [];
    for (;;) {
      this.skip();
      const weight = /^\/([^/]*)\//.exec(this.text.slice(this.at, this.at + 64));
      if (weight && !this.text.startsWith('//', this.at)) {
        checkProbability('weight', weight[1], Number.MAX_VALUE);
        this.at += weight[0].length;
      }
      items.push(this.sequence(end));
      this.skip();
      if (this.text[this.at] !== '|') break;
      this.at++;
    }
    this.depth--;
    return items.length === 1 ? items[0]! : { kind: 'alt', items };
  }

  private sequence(end: string): Expansion {
    const items: Expansion[] = [];
    for (;;) {
      this.skip();
      const c = this.text[this.at];
      if (c === undefined) throw this.error(`missing ${truncate(end)}`);
      if (c === end || c === '|') break;
      if (c === ';' || c === ')' || c === ']') throw this.error(`${truncate(end)} was expected`);
      let item = this.item();
      this.skip();
      if (this.text[this.at] === '<') item = this.repeat(item);
      items.push(item);
    }
    if (items.length === 0) return { kind: 'null' };
    return seq(items);
  }

  private item(): Expansion {
    const c = this.text[this.at]!;
    switch (c) {
      case '(': {
        this.at++;
        const inner = this.alternatives(')');
        this.expect(')');
        return inner;
      }
      case '[': {
        this.at++;
        const inner = this.alternatives(']');
        this.expect(']');
        return { kind: 'repeat', min: 0, max: 1, body: inner };
      }
      case '{':
        return { kind: 'tag', text: this.readTag() };
      case '$': {
        this.at++;
        if (this.text[this.at] === '<') throw this.error('only rules of the same grammar can be referenced ($name), not external ones ($<uri>)');
        const name = this.name();
        if (name === 'NULL') return { kind: 'null' };
        if (name === 'VOID') return { kind: 'void' };
        if (name === 'GARBAGE') return { kind: 'garbage' };
        return { kind: 'ref', rule: name };
      }
      case '"': {
        const close = this.text.indexOf('"', this.at + 1);
        if (close < 0) throw this.error('a quoted token is not closed');
        const token = this.text.slice(this.at, close + 1);
        this.at = close + 1;
        return seq(tokensOf(token));
      }
      case '!':
        throw this.error('language attachments (!lang) are not supported');
      default: {
        if (ABNF_SPECIAL.has(c)) throw this.error(`unexpected ${truncate(c)}`);
        const start = this.at;
        while (this.at < this.text.length && !/\s/.test(this.text[this.at]!) && !ABNF_SPECIAL.has(this.text[this.at]!)) this.at++;
        const keys = tokensOf(this.text.slice(start, this.at));
        return seq(keys);
      }
    }
  }

  private repeat(body: Expansion): Expansion {
    const close = this.text.indexOf('>', this.at);
    if (close < 0) throw this.error('a repeat <n-m> is not closed');
    const inside = this.text.slice(this.at + 1, close);
    this.at = close + 1;
    const m = /^\s*([^/]*?)\s*(?:\/([^/]*)\/)?\s*$/.exec(inside);
    if (!m) throw this.error(`<${inside}> is not a repeat`);
    if (m[2] !== undefined) checkProbability('repeat probability', m[2], 1);
    const { min, max } = parseRepeat(m[1]!, this.limits);
    return min === 1 && max === 1 ? body : { kind: 'repeat', min, max, body };
  }

  private readTag(): string {
    if (this.text.startsWith('{!{', this.at)) {
      const close = this.text.indexOf('}!}', this.at + 3);
      if (close < 0) throw this.error('a tag {!{ is not closed with }!}');
      const tag = this.text.slice(this.at + 3, close);
      this.at = close + 3;
      return tag.trim();
    }
    const close = this.text.indexOf('}', this.at + 1);
    if (close < 0) throw this.error('a tag { is not closed');
    const tag = this.text.slice(this.at + 1, close);
    this.at = close + 1;
    return tag.trim();
  }

  /** Skips white space and comments. */
  private skip(): void {
    for (;;) {
      while (this.at < this.text.length && /\s/.test(this.text[this.at]!)) this.at++;
      if (this.text.startsWith('//', this.at)) {
        const nl = this.text.indexOf('\n', this.at);
        this.at = nl < 0 ? this.text.length : nl + 1;
      } else if (this.text.startsWith('/*', this.at)) {
        const close = this.text.indexOf('*/', this.at + 2);
        if (close < 0) throw this.error('a comment /* is not closed');
        this.at = close + 2;
      } else return;
    }
  }

  private word(): string {
    this.skip();
    const m = /^[A-Za-z][\w-]*/.exec(this.text.slice(this.at, this.at + 64));
    if (!m) throw this.error('a keyword was expected');
    this.at += m[0].length;
    return m[0];
  }

  private name(): string {
    const m = /^[A-Za-z_][\w.\-]*/.exec(this.text.slice(this.at, this.at + 256));
    if (!m) throw this.error('a rule name was expected after $');
    this.at += m[0].length;
    return m[0];
  }

  private until(stop: string): string {
    const end = this.text.indexOf(stop, this.at);
    if (end < 0) throw this.error(`missing ${truncate(stop)}`);
    const value = this.text.slice(this.at, end);
    this.at = end;
    return value;
  }

  private expect(c: string): void {
    this.skip();
    if (this.text[this.at] !== c) throw this.error(`${truncate(c)} was expected`);
    this.at++;
  }

  private error(message: string): SrgsError {
    const line = this.text.slice(0, this.at).split('\n').length;
    return new SrgsError(`ABNF grammar, line ${line}: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Builtins

interface Builtin {
  expansion: Expansion;
  interpret: (digits: string) => string;
}

const DIGIT: Expansion = { kind: 'alt', items: [...'0123456789'].map((key) => ({ kind: 'key', key }) as Expansion) };

function digits(min: number, max: number): Expansion {
  return { kind: 'repeat', min, max, body: DIGIT };
}

const BUILTINS = ['digits', 'boolean', 'number', 'currency', 'phone'];

/** Compiles a `builtin:dtmf/NAME?param=value;…` grammar. Throws SrgsError. */
export function compileBuiltin(uri: string, options: CompileOptions = {}): SrgsGrammar {
  const limits = { ...DEFAULT_SRGS_LIMITS, ...options.limits };
  const m = /^builtin:([^/?]+)\/([^?]*)(?:\?(.*))?$/i.exec(uri.trim());
  if (!m) throw new SrgsError(`${truncate(uri)} is not a builtin grammar URI (builtin:dtmf/digits, …)`);
  const mode = m[1]!.toLowerCase();
  const type = m[2]!.toLowerCase();
  if (mode === 'voice' || mode === 'grammar') {
    throw new SrgsError(`voice builtin grammars are not supported (${truncate(uri)}): use builtin:dtmf/${type || 'digits'}`);
  }
  if (mode !== 'dtmf') throw new SrgsError(`${truncate(uri)} is not a builtin grammar URI (builtin:dtmf/…)`);
  const params = new Map<string, string>();
  for (const part of (m[3] ?? '').split(/[;&]/)) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw new SrgsError(`the builtin parameter ${truncate(part)} has no value`);
    params.set(decodeParam(part.slice(0, eq), uri).trim().toLowerCase(), decodeParam(part.slice(eq + 1), uri).trim());
  }
  const builtin = makeBuiltin(type, params, limits, uri);
  return new SrgsGrammar(new Map(), builtin.expansion, undefined, limits, options.name ?? uri.trim(), builtin.interpret);
}

function decodeParam(text: string, uri: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new SrgsError(`${truncate(uri)} has a malformed %-escape`);
  }
}

function takeCount(params: Map<string, string>, name: string, limits: SrgsLimits, uri: string): number | undefined {
  const value = params.get(name);
  params.delete(name);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > limits.digits) {
    throw new SrgsError(`${name}=${truncate(value)} in ${truncate(uri)} is not a count of keys (0 to ${limits.digits})`);
  }
  return Number(value);
}

function takeKey(params: Map<string, string>, name: string, fallback: string, uri: string): string {
  const value = params.get(name);
  params.delete(name);
  if (value === undefined) return fallback;
  const key = value.toUpperCase();
  if (key.length !== 1 || !DTMF_DIGITS.includes(key)) throw new SrgsError(`${name}=${truncate(value)} in ${truncate(uri)} is not a DTMF key`);
  return key;
}

function makeBuiltin(type: string, params: Map<string, string>, limits: SrgsLimits, uri: string): Builtin {
  let builtin: Builtin;
  switch (type) {
    case 'digits': {
      const length = takeCount(params, 'length', limits, uri);
      let min = takeCount(params, 'minlength', limits, uri);
      let max = takeCount(params, 'maxlength', limits, uri);
      if (length !== undefined) {
        if ((min !== undefined && min !== length) || (max !== undefined && max !== length)) {
          throw new SrgsError(`length contradicts minlength/maxlength in ${truncate(uri)}`);
        }
        min = max = length;
      }
      min ??= 1;
      const upper = max ?? Number.POSITIVE_INFINITY;
      if (upper < min) throw new SrgsError(`maxlength is less than minlength in ${truncate(uri)}`);
      if (upper === 0) throw new SrgsError(`${truncate(uri)} accepts no key`);
      builtin = { expansion: digits(min, upper), interpret: (d) => d };
      break;
    }
    case 'boolean': {
      const yes = takeKey(params, 'y', '1', uri);
      const no = takeKey(params, 'n', '2', uri);
      if (yes === no) throw new SrgsError(`y and n are the same key in ${truncate(uri)}`);
      builtin = {
        expansion: { kind: 'alt', items: [{ kind: 'key', key: yes }, { kind: 'key', key: no }] },
        interpret: (d) => (d === yes ? 'true' : 'false'),
      };
      break;
    }
    case 'number':
      builtin = {
        expansion: { kind: 'seq', items: [digits(1, Infinity), { kind: 'repeat', min: 0, max: 1, body: { kind: 'seq', items: [{ kind: 'key', key: '*' }, digits(1, Infinity)] } }] },
        interpret: (d) => d.replace('*', '.'),
      };
      break;
    case 'currency':
      builtin = {
        expansion: { kind: 'seq', items: [digits(0, Infinity), { kind: 'repeat', min: 0, max: 1, body: { kind: 'seq', items: [{ kind: 'key', key: '*' }, digits(0, 2)] } }] },
        interpret: (d) => d.replace('*', '.'),
      };
      break;
    case 'phone':
      builtin = {
        expansion: { kind: 'seq', items: [digits(1, Infinity), { kind: 'repeat', min: 0, max: 1, body: { kind: 'seq', items: [{ kind: 'key', key: '*' }, digits(1, Infinity)] } }] },
        interpret: (d) => d.replace('*', 'x'),
      };
      break;
    default:
      throw new SrgsError(`the builtin grammar ${truncate(type)} is not supported (builtin:dtmf/ ${BUILTINS.join(', ')})`);
  }
  if (params.size > 0) throw new SrgsError(`unknown parameter ${truncate([...params.keys()][0]!)} in ${truncate(uri)}`);
  return builtin;
}

// ---------------------------------------------------------------------------------------------
// The automaton

const ANY = '';

interface Edge {
  to: number;
  /** The key consumed: one of DTMF_DIGITS, ANY for any key (GARBAGE), undefined for an epsilon edge. */
  key?: string;
  tag?: SrgsTag;
}

/** Tags of a path, newest first, shared between threads. */
interface TagList {
  tag: SrgsTag;
  next: TagList | undefined;
}

interface Thread {
  state: number;
  tags: TagList | undefined;
}

class NfaBuilder {
  readonly edges: Edge[][] = [];

  constructor(
    private readonly rules: Map<string, Rule>,
    private readonly maxStates: number,
  ) {}

  state(): number {
    if (this.edges.length >= this.maxStates) {
      throw new SrgsError(`the grammar is too large once expanded: more than ${this.maxStates} states (lower the repeat counts)`);
    }
    this.edges.push([]);
    return this.edges.length - 1;
  }

  edge(from: number, to: number, key?: string, tag?: SrgsTag): void {
    const edge: Edge = { to };
    if (key !== undefined) edge.key = key;
    if (tag !== undefined) edge.tag = tag;
    this.edges[from]!.push(edge);
  }

  /** Adds `exp` after state `from`; returns the state where it ends. */
  emit(exp: Expansion, from: number, rule: string): number {
    switch (exp.kind) {
      case 'key': {
        const to = this.state();
        this.edge(from, to, exp.key);
        return to;
      }
      case 'seq': {
        let at = from;
        for (const item of exp.items) at = this.emit(item, at, rule);
        return at;
      }
      case 'alt': {
        const keys = exp.items;
        if (keys.every((item): item is KeyExpansion => item.kind === 'key')) {
          // a choice of keys (a digit rule): one state, an edge per key
          const to = this.state();
          for (const item of keys) this.edge(from, to, item.key);
          return to;
        }
        const end = this.state();
        for (const item of exp.items) {
          const start = this.state();
          this.edge(from, start);
          this.edge(this.emit(item, start, rule), end);
        }
        return end;
      }
      case 'repeat': {
        let at = from;
        for (let i = 0; i < exp.min; i++) at = this.emit(exp.body, at, rule);
        if (exp.max === Number.POSITIVE_INFINITY) {
          const loop = this.state();
          const body = this.state();
          const exit = this.state();
          this.edge(at, loop);
          this.edge(loop, body); // greedy: another round first
          this.edge(loop, exit);
          this.edge(this.emit(exp.body, body, rule), loop);
          return exit;
        }
        for (let i = exp.min; i < exp.max; i++) {
          const body = this.state();
          const end = this.state();
          this.edge(at, body);
          this.edge(this.emit(exp.body, body, rule), end);
          this.edge(at, end);
          at = end;
        }
        return at;
      }
      case 'ref':
        return this.emit(this.rules.get(exp.rule)!.body, from, exp.rule);
      case 'null':
        return from;
      case 'void':
        return this.state(); // reached by no edge: nothing after it can match
      case 'garbage': {
        const loop = this.state();
        const exit = this.state();
        this.edge(from, loop);
        this.edge(loop, exit); // as short as the rest allows
        this.edge(loop, loop, ANY);
        return exit;
      }
      case 'tag': {
        const to = this.state();
        this.edge(from, to, undefined, { text: exp.text, rule });
        return to;
      }
    }
  }
}

const OUT_LITERAL = /^\s*out\s*=\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*;?\s*$/;

/** A compiled grammar: make matchers from it (one per collection), or match a whole key string. */
export class SrgsGrammar {
  /** The name given at compile time (NLSML's `grammar` attribute), if any; a builtin's URI. */
  readonly name: string | undefined;
  readonly tagFormat: string | undefined;
  readonly limits: SrgsLimits;
  /** The automaton's size (states), for figures and tests. */
  readonly stateCount: number;
  private readonly edges: Edge[][];
  private readonly start: number;
  private readonly accept: number;
  private readonly interpretFn: ((digits: string) => string) | undefined;
  private readonly literalTags: boolean;

  /** @internal use compileGrammar, compileSrgsXml or compileBuiltin */
  constructor(
    rules: Map<string, Rule>,
    root: Expansion,
    tagFormat: string | undefined,
    limits: SrgsLimits,
    name: string | undefined,
    interpret: ((digits: string) => string) | undefined,
  ) {
    this.name = name;
    this.tagFormat = tagFormat;
    this.limits = limits;
    this.interpretFn = interpret;
    this.literalTags = tagFormat === undefined || /-literals$/.test(tagFormat);
    const builder = new NfaBuilder(rules, limits.states);
    this.start = builder.state();
    const rootRule = root.kind === 'ref' ? root.rule : '';
    this.accept = builder.emit(root, this.start, rootRule);
    this.edges = prune(builder.edges, this.accept);
    this.stateCount = builder.edges.length;
  }

  /** A new matcher, at the start of the input. */
  matcher(grammarIndex = 0): SrgsMatcher {
    return new SrgsMatcher(this, grammarIndex);
  }

  /** What the grammar says about a whole key string ('1234#'). */
  match(digits: string): SrgsState {
    const matcher = this.matcher();
    let state = matcher.state();
    for (const key of digits) state = matcher.feed(key);
    return state;
  }

  /** @internal the threads after the epsilon closure of `seeds`, in priority order. */
  closure(seeds: Thread[]): Thread[] {
    const out: Thread[] = [];
    const seen = new Uint8Array(this.edges.length);
    const stack: Thread[] = [];
    for (let s = seeds.length - 1; s >= 0; s--) stack.push(seeds[s]!);
    while (stack.length > 0) {
      const thread = stack.pop()!;
      if (seen[thread.state]) continue;
      seen[thread.state] = 1;
      const edges = this.edges[thread.state]!;
      let consumes = thread.state === this.accept;
      for (let i = edges.length - 1; i >= 0; i--) {
        const edge = edges[i]!;
        if (edge.key !== undefined) {
          consumes = true;
          continue;
        }
        if (seen[edge.to]) continue;
        stack.push({ state: edge.to, tags: edge.tag ? { tag: edge.tag, next: thread.tags } : thread.tags });
      }
      if (consumes) out.push(thread);
    }
    return out;
  }

  /** @internal the threads after one key. */
  step(threads: Thread[], key: string): Thread[] {
    const seeds: Thread[] = [];
    for (const thread of threads) {
      for (const edge of this.edges[thread.state]!) {
        if (edge.key === key || edge.key === ANY) seeds.push({ state: edge.to, tags: thread.tags });
      }
    }
    return this.closure(seeds);
  }

  /** @internal */
  initial(): Thread[] {
    return this.closure([{ state: this.start, tags: undefined }]);
  }

  /** @internal the state of a thread list. */
  describe(threads: Thread[], digits: string, grammarIndex: number): SrgsState {
    let accepted: Thread | undefined;
    let canExtend = false;
    for (const thread of threads) {
      if (thread.state === this.accept && accepted === undefined) accepted = thread;
      for (const edge of this.edges[thread.state]!) if (edge.key !== undefined) canExtend = true;
    }
    if (accepted !== undefined && digits.length > 0) {
      return { status: 'match', canExtend, digits, match: this.matchOf(accepted, digits, grammarIndex) };
    }
    return { status: canExtend ? 'partial' : 'nomatch', canExtend, digits };
  }

  /** @internal the match of an accepted thread. */
  matchOf(thread: Thread, digits: string, grammarIndex: number): SrgsMatch {
    const tags: SrgsTag[] = [];
    for (let t = thread.tags; t; t = t.next) tags.push(t.tag);
    tags.reverse();
    let interpretation: string | undefined;
    if (this.interpretFn) interpretation = this.interpretFn(digits);
    else if (tags.length > 0) {
      const last = tags[tags.length - 1]!.text;
      const m = this.tagFormat === undefined || !this.literalTags ? OUT_LITERAL.exec(last) : null;
      if (m) interpretation = m[1] ?? m[2];
      else if (this.literalTags) interpretation = last;
    }
    return { grammar: this, grammarIndex, digits, tags, interpretation };
  }

  /** @internal whether the thread list holds the accepting state. */
  acceptedIn(threads: Thread[]): Thread | undefined {
    return threads.find((t) => t.state === this.accept);
  }
}

/** Drops the edges into states from which the accepting state cannot be reached. */
function prune(edges: Edge[][], accept: number): Edge[][] {
  const reverse: number[][] = edges.map(() => []);
  edges.forEach((list, from) => {
    for (const edge of list) reverse[edge.to]!.push(from);
  });
  const live = new Uint8Array(edges.length);
  const queue = [accept];
  live[accept] = 1;
  while (queue.length > 0) {
    const state = queue.pop()!;
    for (const from of reverse[state]!) {
      if (!live[from]) {
        live[from] = 1;
        queue.push(from);
      }
    }
  }
  return edges.map((list) => list.filter((edge) => live[edge.to]));
}

/** Follows the keys of one collection through a grammar. */
export class SrgsMatcher {
  private threads: Thread[];
  private digits = '';
  private current: SrgsState;

  constructor(
    readonly grammar: SrgsGrammar,
    readonly grammarIndex = 0,
  ) {
    this.threads = grammar.initial();
    this.current = grammar.describe(this.threads, '', grammarIndex);
  }

  /**
   * The state after one more key ('0'-'9', '*', '#', 'A'-'D'; letters in either case). A key
   * that is not a DTMF key, and keys past the digit limit, make it a nomatch. Once a nomatch,
   * always a nomatch.
   */
  feed(key: string): SrgsState {
    const k = key.toUpperCase();
    this.digits += k;
    if (k.length !== 1 || !DTMF_DIGITS.includes(k) || this.digits.length > this.grammar.limits.digits) this.threads = [];
    else this.threads = this.grammar.step(this.threads, k);
    this.current = this.grammar.describe(this.threads, this.digits, this.grammarIndex);
    return this.current;
  }

  /** The state after the keys so far (no key yet: never a match; see terminate()). */
  state(): SrgsState {
    return this.current;
  }

  /** Whether one more key would leave the input a match or a partial one (not a nomatch). */
  accepts(key: string): boolean {
    const k = key.toUpperCase();
    if (k.length !== 1 || !DTMF_DIGITS.includes(k)) return false;
    return this.grammar.step(this.threads, k).length > 0;
  }

  /**
   * The input ends here (a terminator key, a timeout): a match if the keys so far form a
   * sentence (the empty one included, when the grammar has it), else a nomatch; never partial.
   */
  terminate(): SrgsState {
    const accepted = this.grammar.acceptedIn(this.threads);
    if (accepted) {
      return { status: 'match', canExtend: false, digits: this.digits, match: this.grammar.matchOf(accepted, this.digits, this.grammarIndex) };
    }
    return { status: 'nomatch', canExtend: false, digits: this.digits };
  }

  /** Back to the start of the input. */
  reset(): void {
    this.threads = this.grammar.initial();
    this.digits = '';
    this.current = this.grammar.describe(this.threads, '', this.grammarIndex);
  }
}

/**
 * Several grammars at once (Rayo's input takes one or more): the keys go to each; the input is a
 * match when one grammar matches, the first such grammar (in the order given) winning; partial
 * while any grammar could still match; a nomatch when none can. `canExtend` is true while any
 * grammar could take more keys.
 */
export class SrgsGrammarSet {
  private readonly matchers: SrgsMatcher[];
  private current: SrgsState;

  constructor(readonly grammars: readonly SrgsGrammar[]) {
    if (grammars.length === 0) throw new SrgsError('no grammar');
    this.matchers = grammars.map((g, i) => g.matcher(i));
    this.current = this.combine(this.matchers.map((m) => m.state()));
  }

  feed(key: string): SrgsState {
    this.current = this.combine(this.matchers.map((m) => m.feed(key)));
    return this.current;
  }

  state(): SrgsState {
    return this.current;
  }

  accepts(key: string): boolean {
    return this.matchers.some((m) => m.accepts(key));
  }

  terminate(): SrgsState {
    const states = this.matchers.map((m) => m.terminate());
    const matched = states.find((s) => s.status === 'match');
    return matched ?? { status: 'nomatch', canExtend: false, digits: states[0]!.digits };
  }

  reset(): void {
    for (const m of this.matchers) m.reset();
    this.current = this.combine(this.matchers.map((m) => m.state()));
  }

  private combine(states: SrgsState[]): SrgsState {
    const canExtend = states.some((s) => s.canExtend);
    const matched = states.find((s) => s.status === 'match');
    const digits = states[0]!.digits;
    if (matched) return { status: 'match', canExtend, digits, match: matched.match! };
    return { status: canExtend ? 'partial' : 'nomatch', canExtend, digits };
  }
}
