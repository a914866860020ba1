/**
 * A deterministic, seeded generator of realistic e-mail messages, each in two equivalent
 * forms: the XIMSS `<EMail>` XML presentation (for `messageAppend`) and the raw RFC 822
 * text (for IMAP `APPEND`). Message `i` of a corpus depends only on the corpus seed and `i`,
 * so any slice can be generated on its own, in any order, on any machine.
 *
 * What the messages look like: From, To (1-3) and Cc (0-2) with real names (some of them
 * non-ASCII, some addresses without a name), a Subject (about one in five non-ASCII, some
 * with Re:/Fwd:), a Date spread over 2014-2025 with a time zone, a Message-ID, sometimes an
 * X-Mailer, a text/plain body of 1-20 KB (log-uniform), and in about 30% of the messages a
 * multipart/alternative with an HTML version of the same text. Flags: about 70% Seen, 8%
 * Flagged, 15% Answered.
 *
 * Bump CORPUS_VERSION whenever the output changes: the populated-mailbox caches are keyed by it.
 */

export const CORPUS_VERSION = 1;

export type CorpusFlag = 'Seen' | 'Flagged' | 'Answered';

export interface CorpusMessage {
  index: number;
  /** The Date field, seconds since the epoch (GMT). */
  date: number;
  /** The Date field's zone, in seconds east of GMT. */
  zone: number;
  flags: CorpusFlag[];
  from: { name: string | undefined; address: string };
  subject: string;
  multipart: boolean;
  /** `<EMail>…</EMail>`: the XIMSS form, LF line ends in the text parts. */
  xml: string;
  /** The RFC 822 form, CRLF line ends, UTF-8 bytes. */
  raw: Buffer;
}

// --- Random numbers -------------------------------------------------------------------

/** 32-bit string hash (FNV-1a), for seeds given as text. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32: mixes an integer into a well-spread 32-bit value. */
function mix(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** mulberry32: small, fast, good enough for test data. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** [0, 1) */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  hex(digits: number): string {
    let s = '';
    while (s.length < digits) s += this.int(0x10000).toString(16).padStart(4, '0');
    return s.slice(0, digits);
  }
}

// --- Vocabulary -----------------------------------------------------------------------

/** [display form, ASCII form for the address]. */
const FIRST: readonly (readonly [string, string])[] = [
  ['James', 'james'], ['Mary', 'mary'], ['Robert', 'robert'], ['Patricia', 'patricia'], ['John', 'john'],
  ['Jennifer', 'jennifer'], ['Michael', 'michael'], ['Linda', 'linda'], ['David', 'david'], ['Elizabeth', 'elizabeth'],
  ['William', 'william'], ['Susan', 'susan'], ['Richard', 'richard'], ['Jessica', 'jessica'], ['Thomas', 'thomas'],
  ['Sarah', 'sarah'], ['Daniel', 'daniel'], ['Karen', 'karen'], ['Matthew', 'matthew'], ['Nancy', 'nancy'],
  ['Anthony', 'anthony'], ['Lisa', 'lisa'], ['Mark', 'mark'], ['Emily', 'emily'], ['Paul', 'paul'],
  ['Olivia', 'olivia'], ['Kenji', 'kenji'], ['Priya', 'priya'], ['Wei', 'wei'], ['Fatima', 'fatima'],
  ['José', 'jose'], ['Zoë', 'zoe'], ['Björn', 'bjorn'], ['François', 'francois'], ['Łukasz', 'lukasz'],
  ['Søren', 'soren'], ['Renée', 'renee'], ['Jürgen', 'jurgen'], ['Ingrid', 'ingrid'], ['Håkon', 'hakon'],
  ['Олег', 'oleg'], ['Наталья', 'natalya'], ['美咲', 'misaki'], ['太郎', 'taro'], ['Αλέξανδρος', 'alexandros'],
  ['Siobhán', 'siobhan'], ['Çağrı', 'cagri'], ['Nguyễn', 'nguyen'], ['Ana', 'ana'], ['Mateo', 'mateo'],
];
const LAST: readonly (readonly [string, string])[] = [
  ['Smith', 'smith'], ['Johnson', 'johnson'], ['Williams', 'williams'], ['Brown', 'brown'], ['Jones', 'jones'],
  ['Miller', 'miller'], ['Davis', 'davis'], ['Wilson', 'wilson'], ['Anderson', 'anderson'], ['Taylor', 'taylor'],
  ['Thomas', 'thomas'], ['Moore', 'moore'], ['Martin', 'martin'], ['Jackson', 'jackson'], ['Thompson', 'thompson'],
  ['White', 'white'], ['Harris', 'harris'], ['Clark', 'clark'], ['Lewis', 'lewis'], ['Walker', 'walker'],
  ['Tanaka', 'tanaka'], ['Patel', 'patel'], ['Zhang', 'zhang'], ['Kowalski', 'kowalski'], ['Rossi', 'rossi'],
  ["O'Brien", 'obrien'], ['van der Berg', 'vanderberg'], ['Müller', 'mueller'], ['García', 'garcia'], ['Dvořák', 'dvorak'],
  ['Ødegård', 'odegard'], ['Lefèvre', 'lefevre'], ['Gonçalves', 'goncalves'], ['Schröder', 'schroeder'], ['Núñez', 'nunez'],
  ['Иванов', 'ivanov'], ['Петрова', 'petrova'], ['山田', 'yamada'], ['Παπαδόπουλος', 'papadopoulos'], ['Yılmaz', 'yilmaz'],
];
const DOMAINS = [
  'example.com', 'example.org', 'example.net', 'mail.example.com', 'corp.example.com', 'lists.example.org',
  'uni.example.edu', 'shop.example', 'example.co.uk', 'example.de', 'example.fr', 'example.jp',
];
const TOPICS = [
  'Quarterly report', 'Meeting notes from Tuesday', 'Lunch on Friday?', 'Project timeline update', 'Invoice #4471',
  'Your order has shipped', 'Budget review for next year', 'Team offsite planning', 'Question about the API',
  'Release 2.4 checklist', 'Flight itinerary', 'Conference call at 3pm', 'Draft proposal attached', 'Happy birthday!',
  'Server maintenance window', 'Weekly status', 'Re-scheduling our call', 'Code review comments', 'Holiday schedule',
  'New hire onboarding', 'Contract renewal', 'Feedback on the presentation', 'Password reset request',
  'Minutes of the board meeting', 'Travel reimbursement', 'Parking garage closed next week', 'Welcome aboard',
  'Performance numbers', 'Customer escalation', 'Newsletter: autumn edition', 'Reminder: timesheets due',
];
const TOPICS_INTL = [
  'Größenänderung der Präsentation', "Réunion de l'équipe – ordre du jour", 'Встреча в четверг', '会議の議事録',
  'Café après le déjeuner ☕', 'Προσφορά για το έργο', 'Çalışma planı güncellemesi', 'Presupuesto del año próximo',
  'Zusammenfassung: Überprüfung', 'Ännu en påminnelse om mötet', 'Zaproszenie na spotkanie – środa', '新しいプロジェクトについて',
  'Отчёт за квартал', 'Año nuevo, planes nuevos 🎉', 'Résumé des décisions',
];
const WORDS = (
  'the of and to in is that for it as with was on be by this are from at or an have not which but all they ' +
  'we one has more their there will would about can if so what when up out them some time could into only ' +
  'other new also then these two may first any like now over such our most after even because through well ' +
  'project meeting report schedule customer release server budget team review update proposal deadline ' +
  'document version feature issue change request quarter result figure estimate plan draft contract office ' +
  'network storage message mailbox calendar account session invoice payment delivery agenda summary ' +
  'please thanks regards attached following previous tomorrow yesterday morning afternoon week month year ' +
  'important quickly carefully probably already usually certainly currently finally simply exactly'
).split(' ');
const WORDS_INTL = 'Grüße Überprüfung naïve façade déjà résumé Mañana señor Straße fjörd Данные отчёт データ 報告 ακόμα çok'.split(' ');
const MAILERS = ['Mozilla Thunderbird 115.3.1', 'Apple Mail (2.3731)', 'Microsoft Outlook 16.0', 'Evolution 3.46.4', 'K-9 Mail 6.602', 'Mutt/2.2.9'];
/** Seconds east of GMT. */
const ZONES = [-28800, -25200, -21600, -18000, -14400, -10800, 0, 0, 3600, 3600, 7200, 10800, 19800, 28800, 32400, 36000, 43200];

const DATE_FROM = Date.UTC(2014, 0, 1) / 1000;
const DATE_SPAN = Date.UTC(2026, 0, 1) / 1000 - DATE_FROM;

// --- Formatting helpers -----------------------------------------------------------------

const xmlText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const xmlAttr = (s: string): string => xmlText(s).replace(/"/g, '&quot;');
// eslint-disable-next-line no-control-regex
const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

/**
 * RFC 2047 B encoded words for a non-ASCII header value, each word at most 75 characters,
 * never splitting a character; ASCII values are returned unchanged.
 */
function encodeWords(text: string): string {
  if (isAscii(text)) return text;
  const words: string[] = [];
  let chunk = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > 45) {
      words.push(chunk);
      chunk = '';
      bytes = 0;
    }
    chunk += ch;
    bytes += n;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join('\r\n ');
}

/** `"Name" <addr>`, `=?UTF-8?B?…?= <addr>` or a bare address. */
function rawAddress(name: string | undefined, address: string): string {
  if (name === undefined) return address;
  if (!isAscii(name)) return `${encodeWords(name)} <${address}>`;
  return `"${name.replace(/(["\\])/g, '\\$1')}" <${address}>`;
}

function xmlAddress(field: string, name: string | undefined, address: string): string {
  return name === undefined ? `<${field}>${xmlText(address)}</${field}>` : `<${field} realName="${xmlAttr(name)}">${xmlText(address)}</${field}>`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number): string => String(n).padStart(2, '0');

/** RFC 5322 date-time in the given zone: `Wed, 21 Jun 2006 21:51:24 -0700`. */
export function rfc822Date(seconds: number, zone: number): string {
  const d = new Date((seconds + zone) * 1000);
  const sign = zone < 0 ? '-' : '+';
  const z = Math.abs(zone);
  return (
    `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} ${sign}${two(Math.floor(z / 3600))}${two(Math.floor((z % 3600) / 60))}`
  );
}

/** iCalendar GMT form: `20070830T045124Z`. */
export function icalGmt(seconds: number): string {
  const d = new Date(seconds * 1000);
  return (
    `${d.getUTCFullYear()}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}T` +
    `${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`
  );
}

/** Wraps a paragraph at 72 columns (words longer than that stay whole). */
function wrap(paragraph: string, width = 72): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

// --- The corpus -------------------------------------------------------------------------

interface Person {
  name: string | undefined;
  first: string;
  address: string;
}

export class MailCorpus {
  private readonly seed: number;

  /** `name` selects an independent corpus (e.g. 'big', 'append'). */
  constructor(readonly name: string) {
    this.seed = hashString(`ximssd-bench-corpus/${CORPUS_VERSION}/${name}`);
  }

  private rng(index: number): Rng {
    return new Rng(mix(this.seed ^ mix(index)));
  }

  /** The Date of message `index` (seconds, GMT), without generating the message. */
  date(index: number): number {
    return DATE_FROM + this.rng(index).int(DATE_SPAN);
  }

  message(index: number): CorpusMessage {
    const r = this.rng(index);
    const date = DATE_FROM + r.int(DATE_SPAN); // first draw: must match date()
    const zone = r.pick(ZONES);

    const person = (): Person => {
      const [first, firstAscii] = r.pick(FIRST);
      const [last, lastAscii] = r.pick(LAST);
      const address = `${firstAscii}.${lastAscii}${r.chance(0.3) ? r.int(100) : ''}@${r.pick(DOMAINS)}`;
      // One address in ten has no real name.
      return { name: r.chance(0.1) ? undefined : `${first} ${last}`, first, address };
    };
    const from = person();
    const to = Array.from({ length: 1 + r.int(3) }, person);
    const cc = r.chance(0.4) ? Array.from({ length: 1 + r.int(2) }, person) : [];

    let subject = r.chance(0.2) ? r.pick(TOPICS_INTL) : r.pick(TOPICS);
    if (r.chance(0.08)) subject += ` (${r.int(1000)})`;
    const prefix = r.next();
    if (prefix < 0.25) subject = `Re: ${subject}`;
    else if (prefix < 0.3) subject = `Fwd: ${subject}`;

    const messageId = `${r.hex(8)}.${r.hex(6)}.${index}@${from.address.slice(from.address.indexOf('@') + 1)}`;
    const mailer = r.chance(0.5) ? r.pick(MAILERS) : undefined;

    const flags: CorpusFlag[] = [];
    if (r.chance(0.7)) flags.push('Seen');
    if (r.chance(0.08)) flags.push('Flagged');
    if (r.chance(0.15)) flags.push('Answered');

    // The text: 1-20 KB, log-uniform; some messages use non-ASCII words too.
    const targetBytes = Math.round(1024 * Math.exp(r.next() * Math.log(20)));
    const intl = r.chance(0.15);
    const paragraphs: string[] = [`Hi ${to[0]!.first},`];
    let size = paragraphs[0]!.length + 2;
    while (size < targetBytes) {
      const sentences: string[] = [];
      const count = 2 + r.int(5);
      for (let s = 0; s < count; s++) {
        const words: string[] = [];
        const n = 6 + r.int(14);
        for (let w = 0; w < n; w++) words.push(intl && r.chance(0.08) ? r.pick(WORDS_INTL) : r.pick(WORDS));
        const sentence = words.join(' ');
        sentences.push(sentence[0]!.toUpperCase() + sentence.slice(1) + (r.chance(0.1) ? '?' : '.'));
      }
      const paragraph = sentences.join(' ');
      paragraphs.push(paragraph);
      size += paragraph.length + 2;
    }
    paragraphs.push(`Best regards,\n${from.name ?? from.address}`);
    const text = paragraphs.map((p) => (p.includes('\n') ? p : wrap(p).join('\n'))).join('\n\n') + '\n';
    const multipart = r.chance(0.3);
    const boundary = `----=_Part_${r.hex(12)}`;

    // HTML version: the same paragraphs, lines wrapped so that none comes near 998 octets.
    let html = '';
    if (multipart) {
      const body = paragraphs.map((p) => `<p>${wrap(xmlText(p).replace(/\n/g, '<br>\n')).join('\n')}</p>`).join('\n');
      html = `<html>\n<head><meta charset="utf-8"></head>\n<body>\n${body}\n</body>\n</html>\n`;
    }

    // --- XIMSS form
    let xml = '<EMail>';
    xml += xmlAddress('From', from.name, from.address);
    for (const p of to) xml += xmlAddress('To', p.name, p.address);
    for (const p of cc) xml += xmlAddress('Cc', p.name, p.address);
    xml += `<Subject>${xmlText(subject)}</Subject>`;
    xml += `<Date timeShift="${zone}">${icalGmt(date)}</Date>`;
    xml += `<Message-ID>${xmlText(messageId)}</Message-ID>`;
    if (mailer) xml += `<X-Mailer>${xmlText(mailer)}</X-Mailer>`;
    if (multipart) {
      xml +=
        '<MIME type="multipart" subtype="alternative">' +
        `<MIME type="text" subtype="plain">${xmlText(text)}</MIME>` +
        `<MIME type="text" subtype="html">${xmlText(html)}</MIME>` +
        '</MIME>';
    } else xml += `<MIME type="text" subtype="plain">${xmlText(text)}</MIME>`;
    xml += '</EMail>';

    // --- RFC 822 form
    const crlf = (s: string): string => s.replace(/\n/g, '\r\n');
    const cte = (s: string): string => (isAscii(s) ? '7bit' : '8bit');
    const head: string[] = [
      `From: ${rawAddress(from.name, from.address)}`,
      `To: ${to.map((p) => rawAddress(p.name, p.address)).join(',\r\n ')}`,
    ];
    if (cc.length) head.push(`Cc: ${cc.map((p) => rawAddress(p.name, p.address)).join(',\r\n ')}`);
    head.push(`Subject: ${encodeWords(subject)}`, `Date: ${rfc822Date(date, zone)}`, `Message-ID: <${messageId}>`);
    if (mailer) head.push(`X-Mailer: ${mailer}`);
    head.push('MIME-Version: 1.0');
    let raw: string;
    if (multipart) {
      head.push(`Content-Type: multipart/alternative;\r\n boundary="${boundary}"`);
      raw =
        head.join('\r\n') +
        '\r\n\r\nThis is a multi-part message in MIME format.\r\n' +
        `--${boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ${cte(text)}\r\n\r\n${crlf(text)}` +
        `--${boundary}\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: ${cte(html)}\r\n\r\n${crlf(html)}` +
        `--${boundary}--\r\n`;
    } else {
      head.push('Content-Type: text/plain; charset="utf-8"', `Content-Transfer-Encoding: ${cte(text)}`);
      raw = head.join('\r\n') + '\r\n\r\n' + crlf(text);
    }

    return { index, date, zone, flags, from: { name: from.name, address: from.address }, subject, multipart, xml, raw: Buffer.from(raw, 'utf8') };
  }
}
