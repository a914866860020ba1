/**
 * NLSML results (`application/nlsml+xml`): what Rayo's input component reports on a match
 * (XEP-0327, "Input completion", example 072), in the MRCPv2 form of RFC 6787 section 6.3.1
 * (namespace http://www.ietf.org/xml/ns/mrcpv2), from the W3C Natural Language Semantics
 * Markup Language. Built here from a DTMF match, and parsed back (tests and clients use it).
 *
 * What is written, following the XEP's example:
 *   <result xmlns="http://www.ietf.org/xml/ns/mrcpv2" grammar="…">
 *     <interpretation grammar="…" confidence="100">
 *       <input mode="dtmf" confidence="100">1 2 3 4</input>
 *       <instance>semantic result</instance>            (only when there is one)
 *     </interpretation>
 *   </result>
 * The keys are written separated by spaces, as in the XEP. Confidences are written as the XEP
 * does, in percent (0-100); RFC 6787 writes them as 0.0-1.0: the parser reads both and gives
 * 0-1 (a value above 1 is taken as percent). The `<instance>` holds the interpretation as text
 * (escaped), or an element given by the caller.
 */
import { XmlElement, serialize } from '../xml/element.js';
import { XmlParseError, parseXml, type XmlLimits } from '../xml/parser.js';
import type { SrgsMatch } from './srgs.js';

export const NLSML_NAMESPACE = 'http://www.ietf.org/xml/ns/mrcpv2';
export const NLSML_CONTENT_TYPE = 'application/nlsml+xml';

/** An NLSML document that cannot be read. */
export class NlsmlError extends Error {
  override name = 'NlsmlError';
}

export interface NlsmlInterpretation {
  /** The grammar that matched (its URI or session name). */
  grammar?: string;
  /** 0 to 1; written in percent. Default 1. */
  confidence?: number;
  /** 'dtmf' (default) or 'speech'. */
  mode?: string;
  /** What was input: for DTMF the keys ('1234#'), written space-separated. */
  input: string;
  /** Confidence of the input, 0 to 1. Default: the interpretation's. */
  inputConfidence?: number;
  /** The semantic result: text, or an element (NLSML allows XML inside <instance>). */
  instance?: string | XmlElement;
}

export interface NlsmlResultInput {
  /** The `grammar` attribute of <result>: the grammar that matched. */
  grammar?: string;
  interpretations: NlsmlInterpretation[];
}

function percent(confidence: number | undefined): string {
  const c = confidence ?? 1;
  if (!Number.isFinite(c) || c < 0 || c > 1) throw new RangeError(`a confidence is between 0 and 1, not ${c}`);
  return String(Math.round(c * 100));
}

/** The keys as NLSML's DTMF <input> writes them: '1234#' → '1 2 3 4 #'. */
export function spacedDigits(digits: string): string {
  return [...digits].join(' ');
}

/** Builds an NLSML <result> document (a string: no XML declaration). */
export function buildNlsml(result: NlsmlResultInput): string {
  const root = new XmlElement('result', { xmlns: NLSML_NAMESPACE, grammar: result.grammar });
  for (const it of result.interpretations) {
    const interpretation = root.add('interpretation', { grammar: it.grammar, confidence: percent(it.confidence) });
    const mode = it.mode ?? 'dtmf';
    const text = mode === 'dtmf' ? spacedDigits(it.input.replace(/\s+/g, '')) : it.input;
    interpretation.add('input', { mode, confidence: percent(it.inputConfidence ?? it.confidence) }, text);
    if (it.instance !== undefined) {
      const instance = interpretation.add('instance');
      instance.append(it.instance);
    }
  }
  return serialize(root);
}

/**
 * The NLSML of a grammar match: the grammar's name (or `grammarName`), the keys, and an
 * <instance> with the interpretation when the match has one.
 */
export function nlsmlFromMatch(match: SrgsMatch, grammarName?: string): string {
  const grammar = grammarName ?? match.grammar.name;
  const interpretation: NlsmlInterpretation = { input: match.digits, confidence: 1 };
  if (grammar !== undefined) interpretation.grammar = grammar;
  if (match.interpretation !== undefined) interpretation.instance = match.interpretation;
  const input: NlsmlResultInput = { interpretations: [interpretation] };
  if (grammar !== undefined) input.grammar = grammar;
  return buildNlsml(input);
}

// ---------------------------------------------------------------------------------------------
// Parsing

export interface ParsedNlsmlInput {
  mode: string | undefined;
  /** 0 to 1, when given. */
  confidence: number | undefined;
  /** The text of the input, white space collapsed ('1 2 3 4'). */
  text: string;
  /** For mode dtmf: the keys without spaces ('1234'). */
  digits: string | undefined;
  nomatch: boolean;
  noinput: boolean;
}

export interface ParsedNlsmlInterpretation {
  grammar: string | undefined;
  confidence: number | undefined;
  input: ParsedNlsmlInput | undefined;
  /** The text of <instance> (trimmed), when it has one. */
  instance: string | undefined;
  /** The <instance> element itself (its child elements, for structured results). */
  instanceElement: XmlElement | undefined;
}

export interface ParsedNlsml {
  grammar: string | undefined;
  interpretations: ParsedNlsmlInterpretation[];
}

const NLSML_LIMITS: XmlLimits = {
  depth: 32,
  elements: 2048,
  attributes: 32,
  attributeChars: 4096,
  textChars: 64 * 1024,
  rootChildren: 256,
};

function local(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

function child(element: XmlElement, name: string): XmlElement | undefined {
  for (const c of element.children) if (typeof c !== 'string' && local(c.name) === name) return c;
  return undefined;
}

function allText(element: XmlElement): string {
  let s = '';
  for (const c of element.children) s += typeof c === 'string' ? c : allText(c);
  return s;
}

function confidenceOf(value: string | undefined, where: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) throw new NlsmlError(`${where} has confidence ${JSON.stringify(value)}: not 0-1 or 0-100`);
  return n > 1 ? n / 100 : n;
}

/** Reads an NLSML result (MRCPv2 namespace, or the W3C form without one). Throws NlsmlError. */
export function parseNlsml(document: string): ParsedNlsml {
  let root: XmlElement;
  try {
    root = parseXml(document.replace(/^[\uFEFF\s]+/, ''), NLSML_LIMITS);
  } catch (err) {
    if (err instanceof XmlParseError) throw new NlsmlError(`the NLSML result is not well-formed XML: ${err.message}`);
    throw err;
  }
  if (local(root.name) !== 'result') throw new NlsmlError(`the NLSML root element is <${root.name}>, not <result>`);
  const colon = root.name.indexOf(':');
  const ns = root.attr(colon < 0 ? 'xmlns' : `xmlns:${root.name.slice(0, colon)}`);
  if (ns !== undefined && ns !== NLSML_NAMESPACE) throw new NlsmlError(`the NLSML namespace is ${JSON.stringify(ns)}, not ${NLSML_NAMESPACE}`);
  const interpretations: ParsedNlsmlInterpretation[] = [];
  for (const c of root.children) {
    if (typeof c === 'string' || local(c.name) !== 'interpretation') continue;
    const inputElement = child(c, 'input');
    let input: ParsedNlsmlInput | undefined;
    if (inputElement) {
      const mode = inputElement.attr('mode') ?? c.attr('mode') ?? c.attr('inputmode');
      const text = allText(inputElement).replace(/\s+/g, ' ').trim();
      input = {
        mode,
        confidence: confidenceOf(inputElement.attr('confidence'), '<input>'),
        text,
        digits: mode === 'dtmf' ? text.replace(/\s+/g, '') : undefined,
        nomatch: child(inputElement, 'nomatch') !== undefined,
        noinput: child(inputElement, 'noinput') !== undefined,
      };
    }
    const instanceElement = child(c, 'instance');
    const instanceText = instanceElement ? allText(instanceElement).trim() : undefined;
    interpretations.push({
      grammar: c.attr('grammar') ?? root.attr('grammar'),
      confidence: confidenceOf(c.attr('confidence'), '<interpretation>'),
      input,
      instance: instanceText,
      instanceElement,
    });
  }
  return { grammar: root.attr('grammar'), interpretations };
}
