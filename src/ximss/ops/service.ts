import iconv from 'iconv-lite';
import { ServiceError } from '../../services/errors.js';
import { RuleService } from '../../services/rules/service.js';
import type { Settings } from '../../store/store.js';
import { el, type XmlElement } from '../../xml/element.js';
import { appendValue, isDictionary, readValue, valueSize, type XimssValue } from '../../xml/objects.js';
import { formatGmt, formatLocal, parseGmt } from '../../xml/time.js';
import { knownTimeZoneNames } from '../../services/time-zones.js';
import { anytime, inSession, type OperationTable, type SessionContext } from '../engine.js';
import { emptyDictionary } from '../session.js';
import { parseStrings, type Strings } from '../vocabulary.js';
import { smimeStatusOptions } from './smime.js';
import { mainPasswordSession, modifyAppPassword } from './login-security.js';

/** Spec section "Service Operations" (plus the 6.2 session data and language operations). */

const MIN_IDLE_TIMEOUT = 5;
const MAX_IDLE_TIMEOUT = 24 * 3600;

/** Charset names offered to clients: the common MIME charsets this server can decode. */
const CHARSET_CANDIDATES = [
  'utf-8', 'us-ascii', 'iso-8859-1', 'iso-8859-2', 'iso-8859-3', 'iso-8859-4', 'iso-8859-5', 'iso-8859-6',
  'iso-8859-7', 'iso-8859-8', 'iso-8859-9', 'iso-8859-10', 'iso-8859-13', 'iso-8859-14', 'iso-8859-15',
  'iso-8859-16', 'windows-1250', 'windows-1251', 'windows-1252', 'windows-1253', 'windows-1254',
  'windows-1255', 'windows-1256', 'windows-1257', 'windows-1258', 'koi8-r', 'koi8-u', 'ibm866', 'macintosh',
  'shift_jis', 'euc-jp', 'iso-2022-jp', 'gb2312', 'gbk', 'gb18030', 'big5', 'euc-kr', 'tis-620', 'utf-16',
  'utf-16le', 'utf-16be', 'utf-7',
];
const KNOWN_CHARSETS = CHARSET_CANDIDATES.filter((name) => iconv.encodingExists(name));

function timeAttrs(date: Date, timeZone: string | undefined): { gmtTime: string; localTime: string } {
  return { gmtTime: formatGmt(date), localTime: formatLocal(date, timeZone) };
}

function settingText(value: XimssValue | undefined): string {
  return typeof value === 'string' ? value : '';
}

function sessionDataMessage(ctx: SessionContext): XmlElement {
  const name = ctx.request.attrs.name;
  const message = el('sessionData', { name });
  const value = name === undefined ? ctx.session.data : ctx.session.data[name];
  if (value !== undefined) appendValue(message, value);
  return message;
}

export const serviceOperations: OperationTable = {
  noop: inSession(() => {}),

  bye: inSession((ctx) => {
    const { sessions } = ctx.server;
    const session = ctx.session;
    const transport = ctx.conversation.transport;
    // The response goes out first; then the session ends and the connection closes.
    ctx.conversation.afterResponse = () => {
      sessions.end(session, false, 'bye');
      ctx.conversation.session = null;
      if (session.binding === 'tcp') transport?.close();
    };
  }),

  passwordModify: inSession(async (ctx) => {
    const { oldPassword, newPassword, recoveryEMail, name, remove } = ctx.request.attrs;
    // Not from a session opened with an application password (login-security.ts).
    mainPasswordSession(ctx, 'change passwords or the recovery address');
    // With a name: an application password (login-security.ts).
    if (name !== undefined || remove !== undefined) return modifyAppPassword(ctx);
    if (oldPassword === undefined) throw new ServiceError('the oldPassword attribute is missing');
    const { accounts, auth } = ctx.server;
    await auth.checkCurrentPassword(ctx.session.account, oldPassword, ctx.conversation.remoteAddress);
    if (newPassword !== undefined) {
      await accounts.checkPasswordChangeAllowed(ctx.session.account);
      await accounts.setPassword(ctx.session.account, newPassword);
      // The application passwords go with the old password, and the other sessions end.
      await auth.appPasswords.removeAll(ctx.session.account, 'password changed');
      ctx.server.bus.publish('credentialsRevoked', { accountId: ctx.session.account.id, except: ctx.session.urlID });
    }
    if (recoveryEMail !== undefined) await accounts.setRecoveryEmail(ctx.session.account, recoveryEMail);
  }),

  setSessionOption: inSession((ctx) => {
    const { name, value } = ctx.request.attrs;
    if (!name) throw new ServiceError('the name attribute is missing');
    switch (name) {
      case 'reportMailboxChanges':
        ctx.session.reportMailboxChanges = (value ?? '').toLowerCase() === 'yes';
        return;
      case 'idleTimeout': {
        const seconds = Number(value);
        if (!value || !Number.isFinite(seconds) || seconds <= 0) throw new ServiceError('idleTimeout must be a positive number of seconds');
        ctx.session.setIdleTimeout(Math.min(MAX_IDLE_TIMEOUT, Math.max(MIN_IDLE_TIMEOUT, Math.ceil(seconds))));
        return;
      }
      default:
        throw new ServiceError(`unknown session option ${name}`);
    }
  }),

  readStrings: anytime(async (ctx) => {
    const { vocabulary, skins } = ctx.server;
    const { language: requested, timeModified, skinName } = ctx.request.attrs;
    const since = timeModified ? parseGmt(timeModified) : undefined;
    if (timeModified && !since) throw new ServiceError('timeModified must be a GMT time (YYYYMMDDTHHMMSS)');
    const prefLanguage = ctx.session ? settingText(ctx.session.prefs.Language) : undefined;
    const asked = requested || prefLanguage;
    const language = vocabulary.resolve(asked);
    // The server's and the domain's skins lay their strings files over the built-in ones
    // (English.json under <Language>.json); before login there is no domain: the server's only.
    const domain = ctx.session?.account.domain ?? '';
    const englishFile = vocabulary.fileName('English');
    const ownFile = vocabulary.fileName(asked);
    const layers = async (file: string): Promise<{ strings: Strings[]; modified: Date[] }> => {
      const found = (await skins.layers(domain, skinName ?? '', `${file}.json`)).reverse();
      const strings: Strings[] = [];
      const modified: Date[] = [];
      for (const layer of found) {
        const parsed = parseStrings(layer.data.toString('utf8'));
        if (!parsed) {
          ctx.server.log.child({ component: 'skins' }).warn({ event: 'skin.bad_strings', skin: layer.skinName, file: layer.fileName, domain }, 'a strings file of a skin is not a vocabulary; ignored');
          continue;
        }
        strings.push(parsed);
        modified.push(layer.modified);
      }
      return { strings, modified };
    };
    const english = await layers(englishFile);
    const own = ownFile === englishFile ? { strings: [], modified: [] } : await layers(ownFile);
    const modified = new Date(Math.max(vocabulary.modified(language).getTime(), ...[...english.modified, ...own.modified].map((d) => d.getTime())));
    const message = el('strings', {
      skinName: skinName ?? '',
      language: requested ?? '',
      timeModified: formatGmt(modified),
    });
    // Only send the vocabulary when it is newer than the client's copy (whole seconds).
    if (!since || Math.floor(modified.getTime() / 1000) > Math.floor(since.getTime() / 1000)) {
      message.append(...vocabulary.body(language, { english: english.strings, own: own.strings }));
    }
    ctx.send(message);
  }),

  readTime: inSession((ctx) => {
    ctx.send(el('currentTime', timeAttrs(new Date(), ctx.session.timeZone)));
  }),

  readSession: inSession((ctx) => {
    ctx.send(ctx.session.sessionMessage(ctx.server.version));
  }),

  readStatus: inSession(async (ctx) => {
    const session = ctx.session;
    const settings: Settings = await ctx.server.accounts.effectiveSettings(session.account);
    const status = el('currentStatus');
    const usage = await ctx.server.mail.usage(session.account);
    status.add('messageStore', { used: usage.used, limit: usage.limit });
    const tz = session.timeZone;
    if (session.prevLogin) status.add('PrevLogin', { ...timeAttrs(session.prevLogin.time, tz), ip: session.prevLogin.address });
    if (session.lastFailedLogin) {
      status.add('LastFailedLogin', { ...timeAttrs(session.lastFailedLogin.time, tz), ip: session.lastFailedLogin.address });
    }
    for (const key of ['RulesAllowed', 'SignalRulesAllowed', 'RPOPAllowed', 'PWDAllowed']) {
      status.add(key, undefined, settingText(settings[key]));
    }
    if (session.account.recoveryEmail) status.add('PasswordRecovery', undefined, session.account.recoveryEmail);
    status.append(...(await smimeStatusOptions(ctx.server, session)));
    status.add('timeout', { idle: session.idleTimeoutSeconds });
    ctx.send(status);
  }),

  listUploaded: inSession((ctx) => {
    const id = ctx.request.attrs.uploadID;
    const files = id === undefined ? ctx.session.uploads.list() : [ctx.session.uploads.get(id)].filter((f) => f !== undefined);
    if (id !== undefined && files.length === 0) throw new ServiceError('uploaded file not found');
    for (const file of files) {
      ctx.send(
        el('uploadedFile', {
          uploadID: file.id,
          fileName: file.fileName,
          size: file.size,
          type: file.type,
          subtype: file.subtype,
          charset: file.charset,
        }),
      );
    }
  }),

  clearUploaded: inSession((ctx) => {
    ctx.session.uploads.clear(ctx.request.attrs.uploadID);
  }),

  listKnownValues: inSession((ctx) => {
    const values = el('knownValues');
    for (const name of knownTimeZoneNames()) values.add('tzid', { name });
    for (const name of KNOWN_CHARSETS) values.add('charset', { name });
    for (const set of RuleService.knownValues()) {
      const prefix = set.type === 'mailIn' ? 'mailRule' : 'signalRule';
      for (const name of set.allowed) values.add(`${prefix}Allowed`, { name });
      for (const name of set.conditions) values.add(`${prefix}Condition`, { name });
      for (const action of set.actions) values.add(`${prefix}Action`, { name: action.name, allowedSet: action.allowedSet });
    }
    ctx.send(values);
  }),

  getSessionData: inSession((ctx) => {
    ctx.send(sessionDataMessage(ctx));
  }),

  setSessionData: inSession((ctx) => {
    const { name } = ctx.request.attrs;
    const remove = ctx.request.attrs.delete;
    const session = ctx.session;
    if (remove !== undefined && remove !== 'no') {
      if (name === undefined) session.data = emptyDictionary();
      else delete session.data[name];
      return;
    }
    let value: XimssValue;
    try {
      value = readValue(ctx.request);
    } catch (err) {
      throw new ServiceError(`bad session data: ${(err as Error).message}`);
    }
    const next = name !== undefined ? Object.assign(emptyDictionary(), session.data, { [name]: value }) : undefined;
    if (name === undefined && !isDictionary(value) && value !== '') throw new ServiceError('session data must be a dictionary');
    const data = next ?? Object.assign(emptyDictionary(), isDictionary(value) ? value : {});
    const { sessionDataBytes, sessionDataKeys } = ctx.server.config.limits;
    if (Object.keys(data).length > sessionDataKeys) throw new ServiceError(`too many session data keys (at most ${sessionDataKeys})`);
    if (valueSize(data) > sessionDataBytes) throw new ServiceError(`the session data would be larger than ${sessionDataBytes} bytes`);
    session.data = data;
  }),

  getLanguage: inSession((ctx) => {
    ctx.send(el('language', undefined, ctx.session.language));
  }),

  setLanguage: inSession((ctx) => {
    const { language } = ctx.request.attrs;
    if (!language) throw new ServiceError('the language attribute is missing');
    if (!/^[A-Za-z][A-Za-z_-]{0,63}$/.test(language)) throw new ServiceError('invalid language name');
    ctx.session.language = language;
  }),
};
