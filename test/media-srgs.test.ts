/**
 * SRGS DTMF grammars, their matcher, and NLSML results (src/media/srgs.ts, src/media/nlsml.ts):
 * what Rayo's input component collects keys against. No wire here: the grammars are compiled and
 * fed keys directly (the Rayo layer's tests drive the same code over XMPP).
 *
 * Where the vectors come from (the grammars are rewritten here in our own words, with the
 * expected result each source gives; nothing is copied):
 * - XEP-0327 examples 071 and 073 (the grammar is read from ../shared/spec/rayo-examples, as a
 *   client sends it) and 072 (the NLSML a match is reported with).
 * - FreeSWITCH mod_rayo's SRGS unit tests (src/mod/event_handlers/mod_rayo/test/test_srgs.c, the
 *   only Rayo server's matcher): the Adhearsion menu grammars with literal tags, the multi-digit
 *   items (`<item>715</item>`), a grammar with two public rules and no root, the repeat forms
 *   (4, 4-4, 4-6, 0-1, 1-, 0-, 1-3, 1-2 with an optional #) and the malformed repeats (3-1, -1,
 *   1--1, ABC, empty, 1-Z), an unknown ruleref, broken XML. Its results map to ours as
 *   SMT_MATCH_END = 'max' (a match no key can extend), SMT_MATCH = 'match' (a match more keys
 *   could extend), SMT_MATCH_PARTIAL = 'partial', SMT_NO_MATCH = 'nomatch'.
 * - Adhearsion's ruby_speech GRXML matcher and builtins specs (spec/ruby_speech/grxml/
 *   matcher_spec.rb, builtins_spec.rb): single and double keys, * and # tokens, quoted tokens
 *   through a ruleref, token elements, exact / ranged / open repeats before and after a key,
 *   literal tags, and the boolean and currency builtins. MaxMatch = 'max', Match = 'match',
 *   PotentialMatch = 'partial', NoMatch = 'nomatch'.
 * - W3C SRGS 1.0 (the Recommendation and its implementation report tests, e.g.
 *   alternative-empty-paren: an alternative with an empty branch): the special rules NULL, VOID
 *   and GARBAGE (section 2.2.3), rule scope and root (4.7), repeat syntax (2.5), restated for DTMF.
 * - VoiceXML 2.0 appendix P for the builtin:dtmf/ URIs and their parameters.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  SrgsError,
  SrgsGrammarSet,
  compileBuiltin,
  compileGrammar,
  compileSrgsXml,
  type SrgsGrammar,
  type SrgsState,
} from '../src/media/srgs.js';
import { NLSML_NAMESPACE, NlsmlError, buildNlsml, nlsmlFromMatch, parseNlsml } from '../src/media/nlsml.js';
import { XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';

const RAYO_EXAMPLES = fileURLToPath(new URL('../../shared/spec/rayo-examples/', import.meta.url));

/** The CDATA body of the first element named `name` in a Rayo example file. */
function exampleBody(file: string, name: string): XmlElement {
  const root = parseXml(readFileSync(RAYO_EXAMPLES + file, 'utf8').replace(/^<!--.*?-->\s*/s, ''));
  const find = (e: XmlElement): XmlElement | undefined => {
    if (e.name === name) return e;
    for (const c of e.elements()) {
      const found = find(c);
      if (found) return found;
    }
    return undefined;
  };
  const found = find(root);
  assert.ok(found, `${file} has a <${name}>`);
  return found;
}

/** A DTMF grammar document around `body`. */
function dtmf(body: string, attrs = ''): string {
  return `<grammar xmlns="http://www.w3.org/2001/06/grammar" version="1.0" mode="dtmf" ${attrs}>${body}</grammar>`;
}

const DIGIT_RULE = `<rule id="digit"><one-of>${[...'0123456789'].map((d) => `<item> ${d} </item>`).join('')}</one-of></rule>`;

type Expect = 'max' | 'match' | 'partial' | 'nomatch';

function kind(state: SrgsState): Expect {
  if (state.status === 'match') return state.canExtend ? 'match' : 'max';
  return state.status;
}

/** Checks what the grammar says of each key string, and the interpretation where one is given. */
function expectAll(grammar: SrgsGrammar, table: Record<string, Expect | [Expect, string | undefined]>): void {
  for (const [digits, want] of Object.entries(table)) {
    const [expected, interpretation] = Array.isArray(want) ? want : [want, null];
    const state = grammar.match(digits);
    assert.equal(kind(state), expected, `input ${JSON.stringify(digits)}`);
    assert.equal(state.digits, digits.toUpperCase());
    if (state.status === 'match') {
      assert.ok(state.match);
      assert.equal(state.match.digits, digits.toUpperCase());
      if (interpretation !== null) assert.equal(state.match.interpretation, interpretation, `interpretation of ${JSON.stringify(digits)}`);
    } else {
      assert.equal(state.match, undefined);
    }
  }
}

function refused(document: string, message: RegExp): void {
  assert.throws(() => compileSrgsXml(document), (err: unknown) => {
    assert.ok(err instanceof SrgsError, `an SrgsError, not ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('SRGS: the grammar of XEP-0327 examples 071 and 073 (4 digits then #, or * 9)', () => {
  const grammar071 = exampleBody('071-client-requests-dtmf-input-collection-from-a-call.xml', 'grammar');
  const grammar073 = exampleBody('073-client-requests-dtmf-input-collection-from-a-call.xml', 'grammar');

  test('both compile as the client sends them (content-type, CDATA with a leading line break, no root)', () => {
    assert.equal(grammar071.attr('content-type'), 'application/srgs+xml');
    for (const element of [grammar071, grammar073]) {
      const grammar = compileGrammar({ contentType: element.attr('content-type')!, body: element.text() });
      assert.ok(grammar.stateCount > 0);
    }
  });

  test('every interesting key sequence', () => {
    const grammar = compileGrammar({ contentType: 'application/srgs+xml', body: grammar071.text() });
    const table: Record<string, Expect> = {
      '*': 'partial',
      '*9': 'max',
      '*8': 'nomatch',
      '*9#': 'nomatch',
      '**': 'nomatch',
      '#': 'nomatch',
      '1': 'partial',
      '12': 'partial',
      '123': 'partial',
      '1234': 'partial',
      '1234#': 'max',
      '0000#': 'max',
      '9876#': 'max',
      '12345': 'nomatch',
      '123#': 'nomatch',
      '1234#5': 'nomatch',
      '1234*': 'nomatch',
      '12*9': 'nomatch',
      A: 'nomatch',
      '1A': 'nomatch',
      // FreeSWITCH's rayo_example_grammar cases
      '27': 'partial',
      '223': 'partial',
      '2321#': 'max',
      '0123456789*#': 'nomatch',
    };
    for (const d of '0123456789') table[d] = 'partial';
    expectAll(grammar, table);
    // no tags: no interpretation, and the private digit rule is not a root of its own
    assert.equal(grammar.match('1234#').match!.interpretation, undefined);
    assert.deepEqual(grammar.match('1234#').match!.tags, []);
  });

  test('the matcher goes key by key; a nomatch stays one; reset starts again', () => {
    const grammar = compileGrammar({ contentType: 'application/srgs+xml', body: grammar073.text() });
    const matcher = grammar.matcher();
    assert.equal(kind(matcher.state()), 'partial', 'no key yet: not a match, not a nomatch');
    assert.deepEqual([...'1234#'].map((d) => kind(matcher.feed(d))), ['partial', 'partial', 'partial', 'partial', 'max']);
    assert.equal(kind(matcher.feed('1')), 'nomatch');
    assert.equal(kind(matcher.feed('#')), 'nomatch');
    matcher.reset();
    assert.equal(matcher.state().digits, '');
    assert.deepEqual([...'*9'].map((d) => kind(matcher.feed(d))), ['partial', 'max']);
  });

  test('the terminator helpers: accepts() says whether the key belongs to the grammar, terminate() whether the keys so far match', () => {
    const grammar = compileGrammar({ contentType: 'application/srgs+xml', body: grammar071.text() });
    const matcher = grammar.matcher();
    for (const d of '1234') matcher.feed(d);
    assert.equal(matcher.accepts('#'), true, 'here # is part of the grammar: feed it');
    assert.equal(matcher.accepts('*'), false);
    assert.equal(matcher.terminate().status, 'nomatch', '1234 alone is not a sentence');
    matcher.feed('#');
    const end = matcher.terminate();
    assert.equal(end.status, 'match');
    assert.equal(end.canExtend, false);
    assert.equal(end.match!.digits, '1234#');
    const short = grammar.matcher();
    short.feed('1');
    short.feed('2');
    assert.equal(short.accepts('#'), false, 'after 12, # would be a nomatch: it is the terminator');
    assert.equal(short.terminate().status, 'nomatch');
  });
});

describe('SRGS: FreeSWITCH mod_rayo test vectors', () => {
  const menu = (items: [string, string][]): string =>
    dtmf(
      `<rule id="options" scope="public"><one-of>${items.map(([tag, keys]) => `<item><tag>${tag}</tag>${keys}</item>`).join('')}</one-of></rule>`,
      'xml:lang="en-US" root="options" tag-format="semantics/1.0-literals"',
    );

  test('Adhearsion menu grammar: literal tags give the interpretation; 7 is a match that 715 can extend', () => {
    const grammar = compileSrgsXml(menu([['0', '1'], ['1', '5'], ['7', '7'], ['3', '9'], ['4', '715']]));
    expectAll(grammar, {
      '0': 'nomatch',
      '1': ['max', '0'],
      '2': 'nomatch',
      '3': 'nomatch',
      '4': 'nomatch',
      '5': ['max', '1'],
      '6': 'nomatch',
      '7': ['match', '7'],
      '71': 'partial',
      '715': ['max', '4'],
      '8': 'nomatch',
      '9': ['max', '3'],
      '#': 'nomatch',
      '*': 'nomatch',
      A: 'nomatch',
      '27': 'nomatch',
      '223': 'nomatch',
      '0123456789*#': 'nomatch',
    });
    assert.deepEqual(grammar.match('715').match!.tags, [{ text: '4', rule: 'options' }]);
  });

  test('Adhearsion large menu (65 items: 1, 5, 7, 9, then 715 to 775)', () => {
    const items: [string, string][] = [['0', '1'], ['1', '5'], ['2', '7'], ['3', '9']];
    for (let i = 4; i <= 64; i++) items.push([String(i), String(711 + i)]);
    const grammar = compileSrgsXml(menu(items));
    expectAll(grammar, {
      '0': 'nomatch',
      '1': ['max', '0'],
      '5': ['max', '1'],
      '7': ['match', '2'],
      '715': ['max', '4'],
      '761': ['max', '50'],
      '775': ['max', '64'],
      '776': 'nomatch',
      '9': ['max', '3'],
      '27': 'nomatch',
      '0123456789*#': 'nomatch',
    });
  });

  test('duplicate tags', () => {
    const grammar = compileSrgsXml(menu([['2', '1'], ['2', '5'], ['4', '7'], ['4', '9']]));
    expectAll(grammar, { '1': ['max', '2'], '5': ['max', '2'], '7': ['max', '4'], '9': ['max', '4'], '0': 'nomatch', '2': 'nomatch', '#': 'nomatch' });
  });

  test('Adhearsion ask grammar (any one key of 0-9 # *)', () => {
    const grammar = compileSrgsXml(
      dtmf(`<rule id="inputdigits" scope="public"><one-of>${[...'0123456789#*'].map((d) => `<item>${d}</item>`).join('')}</one-of></rule>`, 'root="inputdigits"'),
    );
    const table: Record<string, Expect> = { A: 'nomatch', '27': 'nomatch', '223': 'nomatch', '0123456789*#': 'nomatch' };
    for (const d of '0123456789#*') table[d] = 'max';
    expectAll(grammar, table);
    assert.equal(grammar.match('5').match!.interpretation, undefined);
  });

  const MULTI_A = ['01', '13', ' 24', '36 ', '5 5', '63'];
  const MULTI_B = ['76', '8 8 0', '93', ' # 2 ', '*3', '  27', '223'];
  const multiExpect: Record<string, Expect> = { '4': 'nomatch', A: 'nomatch', '27': 'max', '223': 'max', '0123456789*#': 'nomatch', '880': 'max', '#2': 'max', '22': 'partial' };
  for (const d of '012356789#*') multiExpect[d] = 'partial';

  test('items of several keys without spaces, with spaces, and with padding', () => {
    const items = [...MULTI_A, ...MULTI_B];
    const grammar = compileSrgsXml(dtmf(`<rule id="misc" scope="public"><one-of>${items.map((i) => `<item>${i}</item>`).join('')}</one-of></rule>`, 'root="misc"'));
    expectAll(grammar, multiExpect);
  });

  test('no root and two public rules: either rule matches', () => {
    const grammar = compileSrgsXml(
      dtmf(
        `<rule id="misc" scope="public"><one-of>${MULTI_A.map((i) => `<item>${i}</item>`).join('')}</one-of></rule>` +
          `<rule id="misc2" scope="public"><one-of>${MULTI_B.map((i) => `<item>${i}</item>`).join('')}</one-of></rule>`,
      ),
    );
    expectAll(grammar, multiExpect);
  });

  const pin = (repeat: string): string =>
    dtmf(`${DIGIT_RULE}<rule id="pin" scope="public"><one-of><item><item repeat="${repeat}"><ruleref uri="#digit"/></item>#</item><item>* 9</item></one-of></rule>`);

  test('repeat="4-4" is exactly four', () => {
    expectAll(compileSrgsXml(pin('4-4')), { '1111#': 'max', '1111': 'partial', '1234#': 'max', '1234': 'partial', '11115#': 'nomatch', '11115': 'nomatch' });
  });

  test('repeat="4-6"', () => {
    expectAll(compileSrgsXml(pin('4-6')), {
      '1111#': 'max',
      '1111': 'partial',
      '11115#': 'max',
      '11115': 'partial',
      '111156#': 'max',
      '111156': 'partial',
      '1111567#': 'nomatch',
      '1111567': 'nomatch',
      '111#': 'nomatch',
    });
  });

  test('repeat="0-1" (optional)', () => {
    const grammar = compileSrgsXml(pin('0-1'));
    expectAll(grammar, {
      '1111#': 'nomatch',
      '1111': 'nomatch',
      '11#': 'nomatch',
      '1#': 'max',
      '1': 'partial',
      '#': 'max',
      'A#': 'nomatch',
      A: 'nomatch',
    });
    assert.equal(kind(grammar.match('')), 'partial', 'no key is never a match (noinput is the caller’s)');
  });

  test('repeat="1-" (one or more)', () => {
    expectAll(compileSrgsXml(pin('1-')), {
      '1111#': 'max',
      '1111': 'partial',
      '111157#': 'max',
      '1#': 'max',
      '1': 'partial',
      '#': 'nomatch',
      'A#': 'nomatch',
      [`${'7'.repeat(60)}#`]: 'max',
    });
  });

  test('repeat="0-" (any number)', () => {
    expectAll(compileSrgsXml(pin('0-')), { '1111#': 'max', '1111': 'partial', '111157#': 'max', '1#': 'max', '1': 'partial', '#': 'max', 'A#': 'nomatch', A: 'nomatch' });
  });

  test('repeat="1-3" alone: 1 and 12 are matches that can grow, 123 cannot', () => {
    const grammar = compileSrgsXml(dtmf(`${DIGIT_RULE}<rule id="pin" scope="public"><item repeat="1-3"><ruleref uri="#digit"/></item></rule>`));
    expectAll(grammar, { '1': 'match', '12': 'match', '123': 'max', '1234': 'nomatch' });
  });

  test('one or two digits and an optional #, or three digits', () => {
    const grammar = compileSrgsXml(
      dtmf(
        `${DIGIT_RULE}<rule id="pin" scope="public"><one-of><item><item repeat="1-2"><ruleref uri="#digit"/></item><item repeat="0-1">#</item></item>` +
          `<item repeat="3"><ruleref uri="#digit"/></item></one-of></rule>`,
      ),
    );
    expectAll(grammar, { '1': 'match', '1#': 'max', '12': 'match', '12#': 'max', '123': 'max', '123#': 'nomatch' });
  });

  test('malformed repeats are refused: 3-1, -1, 1--1, ABC, empty, 1-Z', () => {
    const bad = (repeat: string): string => dtmf(`<rule id="pin" scope="public"><item><item repeat="${repeat}">4</item>#</item></rule>`);
    refused(bad('3-1'), /maximum is less than the minimum/);
    for (const r of ['-1', '1--1', 'ABC', '', '1-Z']) refused(bad(r), /is not a repeat count/);
  });

  test('an unknown ruleref (#digi) and a broken element are refused', () => {
    refused(pin('4').replace('#digit', '#digi'), /refers to "#digi", which is not defined/);
    refused(dtmf('<rule id="a" scope="public"><one-of><item>0</item><item>1</item\n<item>2</item></one-of></rule>', 'root="a"'), /not well-formed XML/);
  });
});

describe('SRGS: ruby_speech matcher and builtins vectors', () => {
  const rule = (body: string, root = 'digits', extra = ''): SrgsGrammar => compileSrgsXml(dtmf(`<rule id="${root}">${body}</rule>${extra}`, `root="${root}"`));

  test('one key, through a private root rule', () => {
    const table: Record<string, Expect> = { '6': 'max' };
    for (const d of ['1', '2', '3', '4', '5', '7', '8', '9', '10', '66', '26', '61']) table[d] = 'nomatch';
    expectAll(rule('6', 'digit'), table);
  });

  test('two keys, * and #, and quoted tokens through a ruleref', () => {
    expectAll(rule('5 6'), { '56': 'max', '5': 'partial', '*': 'nomatch', '65': 'nomatch', '57': 'nomatch', '6': 'nomatch' });
    expectAll(rule('* 6'), { '*6': 'max', '*': 'partial', '*7': 'nomatch', '#6': 'nomatch', '6*': 'nomatch' });
    expectAll(rule('# 6'), { '#6': 'max', '#': 'partial', '*6': 'nomatch', '#7': 'nomatch' });
    expectAll(rule('<ruleref uri="#star"/> " 6 "', 'digits', '<rule id="star"> " * " </rule>'), { '*6': 'max', '*': 'partial', '*7': 'nomatch', '6': 'nomatch' });
  });

  test('alternatives of one, two and three keys (token elements)', () => {
    expectAll(rule('<one-of><item>6</item><item>7</item></one-of>'), { '6': 'max', '7': 'max', '*': 'nomatch', '66': 'nomatch', '5': 'nomatch' });
    expectAll(rule('<one-of><item><token>6</token><token>5</token></item><item><token>7</token><token>2</token></item></one-of>'), {
      '65': 'max',
      '72': 'max',
      '6': 'partial',
      '7': 'partial',
      '75': 'nomatch',
      '66': 'nomatch',
    });
    expectAll(rule('<one-of><item><token>6</token><token>5</token><token>2</token></item><item><token>7</token><token>2</token><token>8</token></item></one-of>'), {
      '652': 'max',
      '728': 'max',
      '6': 'partial',
      '65': 'partial',
      '72': 'partial',
      '729': 'nomatch',
      '654': 'nomatch',
    });
  });

  test('a key then an alternative, and an alternative then a key', () => {
    expectAll(rule('* <one-of><item>6</item><item>7</item></one-of>'), { '*6': 'max', '*7': 'max', '*': 'partial', '*8': 'nomatch', '6': 'nomatch' });
    expectAll(rule('<one-of><item>6</item><item>7</item></one-of> *'), { '6*': 'max', '7*': 'max', '6': 'partial', '8*': 'nomatch', '6#': 'nomatch', '*6': 'nomatch' });
  });

  test('exact, ranged and open repeats before and after a key', () => {
    expectAll(rule('1 <item repeat="2">6</item>'), { '166': 'max', '1': 'partial', '16': 'partial', '1666': 'nomatch', '17': 'nomatch' });
    expectAll(rule('<item repeat="2">6</item> 1'), { '661': 'max', '6': 'partial', '66': 'partial', '61': 'nomatch', '6661': 'nomatch', '71': 'nomatch' });
    expectAll(rule('1 <item repeat="0-3">6</item>'), { '1666': 'max', '1': 'match', '16': 'match', '166': 'match', '6': 'nomatch', '16666': 'nomatch', '17': 'nomatch' });
    expectAll(rule('<item repeat="0-3">6</item> 1'), { '1': 'max', '61': 'max', '661': 'max', '6661': 'max', '6': 'partial', '666': 'partial', '66661': 'nomatch', '71': 'nomatch' });
    expectAll(rule('1 <item repeat="2-">6</item>'), { '166': 'match', '1666': 'match', '16666': 'match', '1': 'partial', '16': 'partial', '7': 'nomatch', '17': 'nomatch' });
    expectAll(rule('<item repeat="2-">6</item> 1'), { '661': 'max', '6661': 'max', '66661': 'max', '6': 'partial', '66': 'partial', '7': 'nomatch', '61': 'nomatch' });
  });

  test('literal tags (semantics/1.0-literals)', () => {
    const grammar = compileSrgsXml(
      dtmf(
        '<rule id="options" scope="public"><item><one-of><item><tag>foo</tag>1</item><item><tag>bar</tag>2</item><item><tag>baz</tag>3</item><item><tag>lala</tag>4</item></one-of></item></rule>',
        'root="options" tag-format="semantics/1.0-literals"',
      ),
    );
    expectAll(grammar, { '1': ['max', 'foo'], '2': ['max', 'bar'], '4': ['max', 'lala'], '5': 'nomatch' });
  });

  test('builtin:dtmf/boolean: 1 true, 2 false', () => {
    const grammar = compileBuiltin('builtin:dtmf/boolean');
    expectAll(grammar, { '1': ['max', 'true'], '2': ['max', 'false'], '0': 'nomatch', '3': 'nomatch', '10': 'nomatch' });
    expectAll(compileBuiltin('builtin:dtmf/boolean?y=7;n=9'), { '7': ['max', 'true'], '9': ['max', 'false'], '1': 'nomatch' });
  });

  test('builtin:dtmf/currency: * is the decimal point, then up to two digits', () => {
    const grammar = compileBuiltin('builtin:dtmf/currency');
    expectAll(grammar, {
      '1*01': ['max', '1.01'],
      '01*00': ['max', '01.00'],
      '100000000000*00': ['max', '100000000000.00'],
      '0*08': ['max', '0.08'],
      '*59': ['max', '.59'],
      '0': ['match', '0'],
      '0*0': ['match', '0.0'],
      '10*5': ['match', '10.5'],
      '123': ['match', '123'],
      '123*': ['match', '123.'],
      '#': 'nomatch',
      '1*2*': 'nomatch',
    });
  });
});

describe('SRGS: special rules, nesting, tags, several grammars', () => {
  test('NULL: an empty alternative (as the W3C test alternative-empty-paren does with "()")', () => {
    const grammar = compileSrgsXml(dtmf('<rule id="main" scope="public"><one-of><item>1</item><item><ruleref special="NULL"/></item></one-of> 2</rule>'));
    expectAll(grammar, { '2': 'max', '12': 'max', '1': 'partial', '22': 'nomatch', '112': 'nomatch' });
    // an item with no content is NULL too
    expectAll(compileSrgsXml(dtmf('<rule id="main" scope="public"><one-of><item>1</item><item/></one-of> 2</rule>')), { '2': 'max', '12': 'max' });
  });

  test('VOID: the branch that holds it can never match, and is not even a partial match', () => {
    const grammar = compileSrgsXml(dtmf('<rule id="main" scope="public"><one-of><item>1 3 <ruleref special="VOID"/></item><item>2</item></one-of></rule>'));
    expectAll(grammar, { '1': 'nomatch', '13': 'nomatch', '2': 'max' });
    // a dead branch does not make a match look extendable either
    expectAll(compileSrgsXml(dtmf('<rule id="main" scope="public"><one-of><item>1</item><item>1 2 <ruleref special="VOID"/></item></one-of></rule>')), { '1': 'max', '12': 'nomatch' });
    expectAll(compileSrgsXml(dtmf('<rule id="main" scope="public"><ruleref special="VOID"/></rule>')), { '1': 'nomatch' });
    assert.equal(kind(compileSrgsXml(dtmf('<rule id="main" scope="public"><ruleref special="VOID"/></rule>')).match('')), 'nomatch');
  });

  test('GARBAGE: any run of keys, as short as the rest allows', () => {
    const grammar = compileSrgsXml(dtmf('<rule id="main" scope="public">1 <ruleref special="GARBAGE"/> #</rule>'));
    expectAll(grammar, { '1#': 'match', '1234#': 'match', '1*A#': 'match', '1': 'partial', '123': 'partial', '2': 'nomatch', '#': 'nomatch' });
  });

  test('nested rulerefs: tags are reported in order with the rule they are in', () => {
    const grammar = compileSrgsXml(
      dtmf(
        '<rule id="top" scope="public"><ruleref uri="#menu"/> <item repeat="0-1"><ruleref uri="#confirm"/></item></rule>' +
          '<rule id="menu"><one-of><item>1 <tag>sales</tag></item><item>2 <ruleref uri="#sub"/></item></one-of></rule>' +
          '<rule id="sub"><one-of><item>1<tag>support-a</tag></item><item>2<tag>support-b</tag></item></one-of></rule>' +
          '<rule id="confirm"># <tag>confirmed</tag></rule>',
        'root="top"',
      ),
    );
    expectAll(grammar, { '1': ['match', 'sales'], '1#': ['max', 'confirmed'], '2': 'partial', '21': ['match', 'support-a'], '22#': ['max', 'confirmed'], '3': 'nomatch' });
    assert.deepEqual(grammar.match('22#').match!.tags, [
      { text: 'support-b', rule: 'sub' },
      { text: 'confirmed', rule: 'confirm' },
    ]);
  });

  test('SISR script tags are not executed: out="literal"; is read, anything else leaves no interpretation', () => {
    const grammar = compileSrgsXml(
      dtmf(
        `<rule id="m" scope="public"><one-of><item>1<tag>out="one";</tag></item><item>2<tag> out = 'two' </tag></item><item>3<tag>out.n = 3 * 1;</tag></item></one-of></rule>`,
        'tag-format="semantics/1.0"',
      ),
    );
    expectAll(grammar, { '1': ['max', 'one'], '2': ['max', 'two'], '3': ['max', undefined] });
    // without a tag-format, out="x"; is read the same way; with the literals format it is the literal text
    expectAll(compileSrgsXml(dtmf('<rule id="m" scope="public">1<tag>out="one";</tag></rule>')), { '1': ['max', 'one'] });
    expectAll(compileSrgsXml(dtmf('<rule id="m" scope="public">1<tag>out="one";</tag></rule>', 'tag-format="semantics/1.0-literals"')), { '1': ['max', 'out="one";'] });
    assert.deepEqual(grammar.match('3').match!.tags, [{ text: 'out.n = 3 * 1;', rule: 'm' }]);
  });

  test('ambiguity resolves to the first alternative', () => {
    const grammar = compileSrgsXml(dtmf('<rule id="m" scope="public"><one-of><item>1 2<tag>first</tag></item><item>1 2<tag>second</tag></item></one-of></rule>'));
    expectAll(grammar, { '12': ['max', 'first'] });
  });

  test('letters A-D in either case, in grammars and in keys; no mode attribute is taken as DTMF', () => {
    const grammar = compileSrgsXml('<grammar xmlns="http://www.w3.org/2001/06/grammar" version="1.0" root="m"><rule id="m">a B <token>c</token> D</rule></grammar>');
    expectAll(grammar, { ABCD: 'max', abcd: 'max', AB: 'partial', ABCE: 'nomatch' });
  });

  test('several grammars: the first that matches wins, and each keeps the others waiting while they can extend', () => {
    const pinGrammar = compileSrgsXml(dtmf(`${DIGIT_RULE}<rule id="pin" scope="public"><one-of><item><item repeat="4"><ruleref uri="#digit"/></item>#</item><item>* 9</item></one-of></rule>`), { name: 'session:pin' });
    const yesNo = compileBuiltin('builtin:dtmf/boolean');
    const set = new SrgsGrammarSet([pinGrammar, yesNo]);
    let state = set.feed('1');
    assert.equal(state.status, 'match');
    assert.equal(state.canExtend, true, 'the pin grammar could still take 234#');
    assert.equal(state.match!.grammarIndex, 1);
    assert.equal(state.match!.grammar, yesNo);
    assert.equal(state.match!.interpretation, 'true');
    state = set.feed('2');
    assert.equal(kind(state), 'partial');
    assert.equal(set.terminate().status, 'nomatch');
    set.feed('3');
    set.feed('4');
    assert.equal(set.accepts('#'), true);
    state = set.feed('#');
    assert.equal(kind(state), 'max');
    assert.equal(state.match!.grammarIndex, 0);
    assert.equal(state.match!.grammar.name, 'session:pin');

    const both = new SrgsGrammarSet([compileBuiltin('builtin:dtmf/digits?length=1'), yesNo]);
    const first = both.feed('1');
    assert.equal(first.match!.grammarIndex, 0, 'both match 1: the first grammar wins');
    assert.equal(first.match!.interpretation, '1');
    const none = new SrgsGrammarSet([yesNo, compileBuiltin('builtin:dtmf/digits?length=1')]);
    assert.equal(kind(none.feed('*')), 'nomatch');
    none.reset();
    assert.equal(kind(none.feed('2')), 'max');
    assert.throws(() => new SrgsGrammarSet([]), SrgsError);
  });

  test('terminate(): the empty sentence is a match only when the grammar has it', () => {
    const optional = compileSrgsXml(dtmf('<rule id="m" scope="public"><item repeat="0-2">5</item></rule>'));
    assert.equal(optional.matcher().terminate().status, 'match');
    assert.equal(compileBuiltin('builtin:dtmf/digits').matcher().terminate().status, 'nomatch');
  });

  test('keys that are not DTMF keys, and more keys than the limit, make a nomatch', () => {
    const any = compileBuiltin('builtin:dtmf/digits');
    assert.equal(any.match('12x').status, 'nomatch');
    assert.equal(any.match('12 ').status, 'nomatch');
    assert.equal(kind(any.match('1'.repeat(128))), 'match');
    assert.equal(any.match('1'.repeat(129)).status, 'nomatch');
  });
});

describe('SRGS: builtin:dtmf/ grammars (VoiceXML 2.0 appendix P)', () => {
  test('digits, with length, minlength and maxlength (separated by ; or &)', () => {
    expectAll(compileBuiltin('builtin:dtmf/digits'), { '1': ['match', '1'], '0123456789': ['match', '0123456789'], '*': 'nomatch', '12#': 'nomatch' });
    expectAll(compileBuiltin('builtin:dtmf/digits?length=4'), { '123': 'partial', '1234': ['max', '1234'], '12345': 'nomatch' });
    expectAll(compileBuiltin('builtin:dtmf/digits?minlength=2;maxlength=3'), { '1': 'partial', '12': 'match', '123': 'max', '1234': 'nomatch' });
    expectAll(compileBuiltin('builtin:dtmf/digits?minlength=2&maxlength=2'), { '12': 'max' });
    expectAll(compileGrammar({ url: 'builtin:dtmf/digits?maxlength=2' }), { '1': 'match', '12': 'max' });
    assert.equal(compileBuiltin('builtin:dtmf/digits?length=4').name, 'builtin:dtmf/digits?length=4');
  });

  test('number and phone', () => {
    expectAll(compileBuiltin('builtin:dtmf/number'), { '12': ['match', '12'], '12*5': ['match', '12.5'], '12*': 'partial', '*5': 'nomatch' });
    expectAll(compileBuiltin('builtin:dtmf/phone'), { '5551234': ['match', '5551234'], '5551234*12': ['match', '5551234x12'], '#': 'nomatch' });
  });

  test('bad builtins are refused with a clear error', () => {
    const bad = (uri: string, message: RegExp): void => assert.throws(() => compileGrammar({ url: uri }), (err: unknown) => err instanceof SrgsError && message.test(err.message));
    bad('builtin:voice/digits', /voice builtin grammars are not supported/);
    bad('builtin:dtmf/date', /builtin grammar "date" is not supported/);
    bad('builtin:dtmf/digits?length=x', /not a count of keys/);
    bad('builtin:dtmf/digits?length=4;minlength=2', /contradicts/);
    bad('builtin:dtmf/digits?minlength=5;maxlength=3', /less than minlength/);
    bad('builtin:dtmf/digits?maxlength=0', /less than minlength/);
    bad('builtin:dtmf/digits?length=0', /accepts no key/);
    bad('builtin:dtmf/digits?colour=red', /unknown parameter "colour"/);
    bad('builtin:dtmf/digits?length', /has no value/);
    bad('builtin:dtmf/boolean?y=1;n=1', /same key/);
    bad('builtin:dtmf/boolean?y=x', /not a DTMF key/);
    bad('builtin:nonsense', /not a builtin grammar URI/);
    bad('builtin:dtmf/digits?length=%E0%A4%A', /malformed %-escape/);
    expectAll(compileBuiltin('builtin:dtmf/digits?length=%32'), { '12': 'max' });
    bad('http://example.com/pin.grxml', /not fetched by URL/);
  });
});

describe('SRGS: malformed grammars get a clear SrgsError', () => {
  const ok = '<rule id="m" scope="public">1</rule>';

  test('not XML, not a grammar, wrong namespace, wrong version', () => {
    refused('this is not xml', /not well-formed XML/);
    refused('<grammar mode="dtmf"><rule id="m">1</rule>', /not well-formed XML/);
    refused('<speak xmlns="http://www.w3.org/2001/10/synthesis">hello</speak>', /root element is <speak>, not <grammar>/);
    refused(`<grammar xmlns="urn:other" mode="dtmf">${ok}</grammar>`, /namespace is "urn:other"/);
    refused(dtmf(ok).replace('version="1.0"', 'version="2.0"'), /version "2.0" is not supported/);
  });

  test('mode="voice" says voice is not supported; an unknown mode is refused', () => {
    refused(dtmf(ok).replace('mode="dtmf"', 'mode="voice"'), /voice grammars \(mode="voice"\) are not supported/);
    refused(dtmf(ok).replace('mode="dtmf"', 'mode="telepathy"'), /mode="telepathy" is not a grammar mode/);
    // a voice grammar without a mode is refused at its first word
    refused('<grammar xmlns="http://www.w3.org/2001/06/grammar" root="m"><rule id="m">hello world</rule></grammar>', /the token "hello" is not made of DTMF keys/);
  });

  test('a token that is not a DTMF key', () => {
    refused(dtmf('<rule id="m" scope="public">1 2 E</rule>'), /token "E" is not made of DTMF keys \(0-9, \*, #, A-D\)/);
    refused(dtmf('<rule id="m" scope="public"><token>12x</token></rule>'), /token "12x"/);
    refused(dtmf('<rule id="m" scope="public">"1 2</rule>'), /unterminated quote/);
    refused(dtmf('<rule id="m" scope="public"><token></token></rule>'), /<token> is empty/);
  });

  test('rule references: unknown, external, both or neither attribute, special names', () => {
    refused(dtmf('<rule id="m" scope="public"><ruleref uri="#nowhere"/></rule>'), /refers to "#nowhere", which is not defined/);
    refused(dtmf('<rule id="m" scope="public"><ruleref uri="http://example.com/g.grxml#x"/></rule>'), /only rules of the same grammar can be referenced/);
    refused(dtmf('<rule id="m" scope="public"><ruleref uri="builtin:dtmf/digits"/></rule>'), /only rules of the same grammar/);
    refused(dtmf('<rule id="m" scope="public"><ruleref uri="#m2" special="NULL"/></rule><rule id="m2">1</rule>'), /either a uri or a special/);
    refused(dtmf('<rule id="m" scope="public"><ruleref/></rule>'), /either a uri or a special/);
    refused(dtmf('<rule id="m" scope="public"><ruleref special="EVERYTHING"/></rule>'), /not NULL, VOID or GARBAGE/);
    refused(dtmf('<rule id="NULL" scope="public">1</rule>'), /special rule name/);
  });

  test('recursion is refused when compiled: left, right, and through other rules', () => {
    refused(dtmf('<rule id="m" scope="public"><ruleref uri="#m"/> 1</rule>'), /rule "m" is left-recursive \(#m → #m\)/);
    refused(dtmf('<rule id="m" scope="public"><one-of><item>1 <ruleref uri="#m"/></item><item>2</item></one-of></rule>'), /rule "m" is recursive \(#m → #m\): recursive rules are not supported, use repeat/);
    refused(
      dtmf('<rule id="a" scope="public"><item repeat="0-1">1</item><ruleref uri="#b"/></rule><rule id="b"><ruleref uri="#c"/></rule><rule id="c"><ruleref uri="#a"/> 2</rule>'),
      /left-recursive \(#a → #b → #c → #a\)/,
    );
    refused(dtmf('<rule id="a" scope="public">1 <ruleref uri="#b"/></rule><rule id="b">2 <ruleref uri="#a"/></rule>'), /is recursive \(#a → #b → #a\)/);
  });

  test('rules: no rule, no root, root not defined, duplicate id, no id, bad scope, bad id', () => {
    refused(dtmf(''), /has no rule/);
    refused(dtmf('<rule id="m">1</rule>'), /no root rule: give <grammar> a root attribute, or make a rule public/);
    refused(dtmf(ok, 'root="nothere"'), /root rule "nothere" is not defined/);
    refused(dtmf(`${ok}${ok}`), /rule "m" is defined twice/);
    refused(dtmf('<rule scope="public">1</rule>'), /has no id/);
    refused(dtmf('<rule id="m" scope="global">1</rule>'), /scope="global"/);
    refused(dtmf('<rule id="1m" scope="public">1</rule>'), /not a valid name/);
  });

  test('structure: unknown elements, text outside items, empty one-of, bad weight and repeat-prob', () => {
    refused(dtmf('<rule id="m" scope="public"><digit>1</digit></rule>'), /<digit> is not allowed in rule "m"/);
    refused(dtmf(`<foo/>${ok}`), /<foo> is not allowed in <grammar>/);
    refused(dtmf(`1 ${ok}`), /text is not allowed between the rules/);
    refused(dtmf('<rule id="m" scope="public"><one-of>1<item>2</item></one-of></rule>'), /text in <one-of> must be inside an <item>/);
    refused(dtmf('<rule id="m" scope="public"><one-of><ruleref uri="#m"/></one-of></rule>'), /<ruleref> is not allowed in <one-of>/);
    refused(dtmf('<rule id="m" scope="public"><one-of></one-of></rule>'), /<one-of> has no <item>/);
    refused(dtmf('<rule id="m" scope="public"><one-of><item weight="heavy">1</item></one-of></rule>'), /weight="heavy"/);
    refused(dtmf('<rule id="m" scope="public"><item repeat="2" repeat-prob="1.5">1</item></rule>'), /repeat-prob="1.5"/);
    refused(dtmf('<rule id="m" scope="public"><item repeat="0">1</item></rule>'), /repeats nothing/);
  });

  test('ignored parts: meta, metadata, lexicon, example, foreign elements, weights and repeat-prob', () => {
    const grammar = compileSrgsXml(
      dtmf(
        '<meta name="author" content="x"/><metadata><rdf:RDF xmlns:rdf="urn:x"/></metadata><lexicon uri="x.pls"/><x:note xmlns:x="urn:x">hi</x:note>' +
          '<rule id="m" scope="public"><example>1 2</example><one-of><item weight="10">1</item><item weight="0.5" repeat="2" repeat-prob="0.8">2</item></one-of></rule>',
      ),
    );
    expectAll(grammar, { '1': 'max', '22': 'max', '2': 'partial' });
    // white space in CDATA sections between rules and items is only white space
    expectAll(compileSrgsXml(dtmf('<![CDATA[ \n ]]><rule id="m" scope="public"><one-of><![CDATA[ ]]><item>1</item></one-of></rule>')), { '1': 'max' });
  });

  test('too deep, too large, too many rules, repeats too large, expansion too large', () => {
    let deep = '1';
    for (let i = 0; i < 40; i++) deep = `<item>${deep}</item>`;
    refused(dtmf(`<rule id="m" scope="public">${deep}</rule>`), /nested deeper than 32/);
    refused(dtmf(`<rule id="m" scope="public">${'1 '.repeat(40_000)}</rule>`), /too large: more than 65536 characters/);
    refused(dtmf(Array.from({ length: 300 }, (_, i) => `<rule id="r${i}" scope="public">1</rule>`).join('')), /more than 256 rules/);
    refused(dtmf('<rule id="m" scope="public"><item repeat="5000">1</item></rule>'), /more than 1000/);
    refused(dtmf('<rule id="m" scope="public"><item repeat="1000"><item repeat="1000">1</item></item></rule>'), /too large once expanded: more than 50000 states/);
    // rulerefs multiply too: each level doubles what it refers to
    const levels = Array.from({ length: 20 }, (_, i) => `<rule id="r${i}"><ruleref uri="#r${i + 1}"/><ruleref uri="#r${i + 1}"/></rule>`).join('');
    refused(dtmf(`${levels}<rule id="r20">1</rule>`, 'root="r0"'), /too large once expanded/);
    // the limits can be set per call
    assert.throws(() => compileSrgsXml(dtmf('<rule id="m" scope="public"><item repeat="20">1</item></rule>'), { limits: { states: 10 } }), /more than 10 states/);
  });

  test('content types: others than SRGS XML and ABNF are refused; an empty grammar; url and body at once', () => {
    const bad = (source: Parameters<typeof compileGrammar>[0], message: RegExp): void =>
      assert.throws(() => compileGrammar(source), (err: unknown) => err instanceof SrgsError && message.test(err.message));
    bad({ contentType: 'text/plain', body: '1234' }, /content type "text\/plain" is not supported/);
    bad({ contentType: 'application/srgs+xml', body: '   ' }, /grammar is empty/);
    bad({ url: 'builtin:dtmf/digits', body: '<grammar/>' }, /either a url or a content-type and a body/);
    // the content type may carry parameters; VoiceXML's older type is accepted
    assert.ok(compileGrammar({ contentType: 'application/srgs+xml; charset=utf-8', body: dtmf(ok) }));
    assert.ok(compileGrammar({ contentType: 'application/grammar+xml', body: dtmf(ok) }));
  });

  test('mutated grammars (XML and ABNF) never throw anything but SrgsError', () => {
    const source = exampleBody('071-client-requests-dtmf-input-collection-from-a-call.xml', 'grammar').text();
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = ['<', '>', '/', '"', '#', '*', 'repeat="', '-', '0', '9', '<item>', '</item>', '<ruleref uri="#pin"/>', '<one-of>', ' ', 'x', '&', ']]>'];
    let compiled = 0;
    for (let i = 0; i < 600; i++) {
      let text = source;
      for (let k = 0; k <= random(3); k++) {
        const at = random(text.length);
        const cut = random(4);
        text = text.slice(0, at) + pieces[random(pieces.length)]! + text.slice(at + cut);
      }
      try {
        const grammar = compileSrgsXml(text);
        grammar.match('1234#');
        compiled++;
      } catch (err) {
        assert.ok(err instanceof SrgsError, `mutation ${i} threw ${String(err)}`);
      }
    }
    assert.ok(compiled > 0 && compiled < 600);

    const abnfSource = '#ABNF 1.0;\nmode dtmf;\nroot $pin;\n$digit = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;\npublic $pin = $digit <4> # {pin} | * 9 [1] /* x */;';
    const abnfPieces = ['$', '<', '>', '(', ')', '[', ']', '{', '}', '|', ';', '/', '*', '"', '!', '<0->', '$pin', '$NULL', '{!{', '//', '\n', ' '];
    let abnfCompiled = 0;
    for (let i = 0; i < 600; i++) {
      let text = abnfSource;
      for (let k = 0; k <= random(3); k++) {
        const at = random(text.length);
        text = text.slice(0, at) + abnfPieces[random(abnfPieces.length)]! + text.slice(at + random(4));
      }
      try {
        compileGrammar({ contentType: 'application/srgs', body: text }).match('1234#');
        abnfCompiled++;
      } catch (err) {
        assert.ok(err instanceof SrgsError, `ABNF mutation ${i} threw ${String(err)}`);
      }
    }
    assert.ok(abnfCompiled > 0 && abnfCompiled < 600);
  });
});

describe('SRGS: the ABNF form (application/srgs), a subset', () => {
  const abnf = (text: string): SrgsGrammar => compileGrammar({ contentType: 'application/srgs', body: text });
  const refusedAbnf = (text: string, message: RegExp): void =>
    assert.throws(() => abnf(text), (err: unknown) => {
      assert.ok(err instanceof SrgsError, `an SrgsError, not ${String(err)}`);
      assert.match(err.message, message);
      return true;
    });

  test('the XEP-0327 example 071 grammar written in ABNF gives the same results', () => {
    const grammar = abnf(
      '#ABNF 1.0 UTF-8;\nmode dtmf;\nroot $pin;\n// four digits then #, or * 9\n$digit = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;\npublic $pin = $digit <4> "#" | * 9;\n',
    );
    expectAll(grammar, { '1': 'partial', '1234': 'partial', '1234#': 'max', '*': 'partial', '*9': 'max', '#': 'nomatch', '12345': 'nomatch', '*8': 'nomatch' });
  });

  test('the W3C implementation report test alternative-empty-paren, restated for DTMF: "()" is an empty alternative', () => {
    expectAll(abnf('#ABNF 1.0;\nmode dtmf;\nroot $main;\npublic $main = 1 $optional;\n$optional = 2 | ();'), { '1': 'match', '12': 'max', '2': 'nomatch', '122': 'nomatch' });
  });

  test('optional [ ], weights, repeat probabilities, tags, comments, special rules, declarations', () => {
    const grammar = abnf(
      '#ABNF 1.0 ISO-8859-1;\nlanguage en-US;\nmode dtmf;\nroot $menu;\ntag-format <semantics/1.0-literals>;\nmeta "author" is "x";\n{ var n = 0; };\n' +
        '/* the menu */\npublic $menu = /10/ 1 {sales} | /2.5/ 2 [3 {support-3}] {support} | 4 <2-3 /0.5/> {fours} | 5 $NULL {five} | 6 $VOID | 7 $GARBAGE # {garbage};\n',
    );
    expectAll(grammar, {
      '1': ['max', 'sales'],
      '2': ['match', 'support'],
      '23': ['max', 'support'],
      '44': ['match', 'fours'],
      '444': ['max', 'fours'],
      '4': 'partial',
      '5': ['max', 'five'],
      '6': 'nomatch',
      '7#': ['match', 'garbage'],
      '71234#': ['match', 'garbage'],
    });
    assert.deepEqual(grammar.match('23').match!.tags.map((t) => t.text), ['support-3', 'support']);
    const script = abnf('#ABNF 1.0;\nmode dtmf;\ntag-format <semantics/1.0>;\npublic $m = 1 {!{ out = "one"; }!} | 2 {!{ out.x = 2; }!};');
    expectAll(script, { '1': ['max', 'one'], '2': ['max', undefined] });
  });

  test('malformed ABNF grammars get a clear SrgsError with the line', () => {
    refusedAbnf('mode dtmf;\npublic $m = 1;', /starts with its header, "#ABNF 1.0;"/);
    refusedAbnf('#ABNF 2.0;\npublic $m = 1;', /version "2.0" is not supported/);
    refusedAbnf('#ABNF 1.0;\nmode voice;\npublic $m = hello;', /voice grammars \(mode voice\) are not supported/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = $<http://example.com/g.gram#x>;', /line 3: only rules of the same grammar/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 !en-US;', /language attachments/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = (1 | 2;', /"\)" was expected/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 2', /missing ";"/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\ngrammar-name x;\npublic $m = 1;', /"grammar-name" is not an ABNF declaration/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1;\nroot $m;', /declarations come before the rules/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 $m | 2;', /rule "m" is recursive/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = hello;', /token "hello" is not made of DTMF keys/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 <2-1>;', /maximum is less than the minimum/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 /* open;', /comment \/\* is not closed/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\n$m = 1;', /no root rule: declare root \$name;, or make a rule public/);
    refusedAbnf('#ABNF 1.0;\nmode dtmf;\npublic $m = 1 {tag;', /tag \{ is not closed/);
    refusedAbnf(`#ABNF 1.0;\nmode dtmf;\npublic $m = ${'('.repeat(40)}1${')'.repeat(40)};`, /nested deeper than 32/);
  });
});

describe('NLSML results', () => {
  test('XEP-0327 example 072 is read: grammar, mode, confidence, keys', () => {
    const match = exampleBody('072-component-indicates-it-has-completed-due-to-one-of-the-gramm.xml', 'match');
    assert.equal(match.attr('content-type'), 'application/nlsml+xml');
    const result = parseNlsml(match.text());
    assert.equal(result.grammar, 'http://foodorder');
    assert.equal(result.interpretations.length, 1);
    const [it] = result.interpretations;
    assert.equal(it!.grammar, 'http://foodorder');
    assert.equal(it!.confidence, undefined);
    assert.deepEqual(it!.input, { mode: 'dtmf', confidence: 1, text: '1 2 3 4', digits: '1234', nomatch: false, noinput: false });
    assert.equal(it!.instance, undefined);
  });

  test('a match is written as the XEP shows it, and reads back the same', () => {
    const grammar = compileBuiltin('builtin:dtmf/digits?length=4', { name: 'http://foodorder' });
    const state = grammar.match('1234');
    const document = nlsmlFromMatch(state.match!);
    assert.equal(
      document,
      '<result xmlns="http://www.ietf.org/xml/ns/mrcpv2" grammar="http://foodorder"><interpretation grammar="http://foodorder" confidence="100">' +
        '<input mode="dtmf" confidence="100">1 2 3 4</input><instance>1234</instance></interpretation></result>',
    );
    const back = parseNlsml(document);
    assert.equal(back.grammar, 'http://foodorder');
    assert.equal(back.interpretations[0]!.input!.digits, '1234');
    assert.equal(back.interpretations[0]!.instance, '1234');
    assert.equal(back.interpretations[0]!.confidence, 1);
    // without tags and without a name: no instance, no grammar attribute
    const plain = nlsmlFromMatch(compileSrgsXml(dtmf('<rule id="m" scope="public">1 #</rule>')).match('1#').match!);
    assert.equal(plain, `<result xmlns="${NLSML_NAMESPACE}"><interpretation confidence="100"><input mode="dtmf" confidence="100">1 #</input></interpretation></result>`);
    assert.equal(parseNlsml(plain).interpretations[0]!.input!.digits, '1#');
    // a name given by the caller wins
    assert.match(nlsmlFromMatch(state.match!, 'session:grammar-2'), /grammar="session:grammar-2"/);
  });

  test('tag text is escaped; an element instance is kept as XML; several interpretations', () => {
    const grammar = compileSrgsXml(dtmf('<rule id="m" scope="public">1<tag>a &lt;b&gt; &amp; "c"</tag></rule>'));
    const document = nlsmlFromMatch(grammar.match('1').match!);
    assert.match(document, /<instance>a &lt;b&gt; &amp; "c"<\/instance>/);
    assert.equal(parseNlsml(document).interpretations[0]!.instance, 'a <b> & "c"');

    const instance = new XmlElement('order', {}, [new XmlElement('pin', {}, ['1234']), new XmlElement('when', {}, ['now & then'])]);
    const two = buildNlsml({
      grammar: 'g1',
      interpretations: [
        { grammar: 'g1', confidence: 0.9, input: '1234', instance },
        { grammar: 'g2', confidence: 0.25, inputConfidence: 0.5, input: '12 34', instance: 'x' },
      ],
    });
    const parsed = parseNlsml(two);
    assert.equal(parsed.interpretations.length, 2);
    assert.equal(parsed.interpretations[0]!.confidence, 0.9);
    assert.equal(parsed.interpretations[0]!.instanceElement!.element('order')!.element('pin')!.text(), '1234');
    assert.equal(parsed.interpretations[0]!.instanceElement!.element('order')!.element('when')!.text(), 'now & then');
    assert.equal(parsed.interpretations[1]!.grammar, 'g2');
    assert.equal(parsed.interpretations[1]!.confidence, 0.25);
    assert.equal(parsed.interpretations[1]!.input!.confidence, 0.5);
    assert.equal(parsed.interpretations[1]!.input!.text, '1 2 3 4');
    assert.throws(() => buildNlsml({ interpretations: [{ input: '1', confidence: 2 }] }), RangeError);
  });

  test('the W3C form without a namespace, 0-1 confidences, nomatch and noinput', () => {
    const w3c = parseNlsml(
      '<?xml version="1.0"?>\n<result grammar="pin"><interpretation confidence="0.85"><instance><pin>42</pin></instance><input mode="dtmf">4 2</input></interpretation></result>',
    );
    assert.equal(w3c.interpretations[0]!.confidence, 0.85);
    assert.equal(w3c.interpretations[0]!.grammar, 'pin', 'inherited from <result>');
    assert.equal(w3c.interpretations[0]!.instance, '42');
    assert.equal(w3c.interpretations[0]!.input!.digits, '42');
    const nomatch = parseNlsml(`<result xmlns="${NLSML_NAMESPACE}"><interpretation><input mode="dtmf"><nomatch/></input></interpretation></result>`);
    assert.equal(nomatch.interpretations[0]!.input!.nomatch, true);
    const noinput = parseNlsml(`<result xmlns="${NLSML_NAMESPACE}"><interpretation><input><noinput/></input></interpretation></result>`);
    assert.equal(noinput.interpretations[0]!.input!.noinput, true);
    assert.equal(noinput.interpretations[0]!.input!.digits, undefined);
  });

  test('malformed NLSML gets an NlsmlError', () => {
    const bad = (text: string, message: RegExp): void => assert.throws(() => parseNlsml(text), (err: unknown) => err instanceof NlsmlError && message.test(err.message));
    bad('not xml', /not well-formed XML/);
    bad('<match/>', /root element is <match>, not <result>/);
    bad('<result xmlns="urn:x"/>', /namespace is "urn:x"/);
    bad('<result><interpretation confidence="high"/></result>', /confidence "high"/);
    bad('<result><interpretation><input confidence="140">1</input></interpretation></result>', /confidence "140"/);
  });
});
